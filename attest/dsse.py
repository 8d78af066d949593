"""DSSE v1: pre-authentication encoding and the JSON envelope (secure-systems-lab/dsse).

A DSSE signature covers ``PAE(UTF8(payloadType), payload)``, never the bare payload, so a
signature over one payload type cannot be replayed as another (DSSE protocol, "Signature
Definition")::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where ``LEN`` is the ASCII decimal byte length without leading zeros. The envelope (DSSE
envelope.md) carries the payload and signatures in base64::

    {"payload": "<b64>", "payloadType": "<type>", "signatures": [{"keyid": "<id>", "sig": "<b64>"}]}

``keyid`` is an optional, unauthenticated hint (DSSE protocol: it "MUST NOT be used for security
decisions"). Signing is injected: ``sign(pae) -> signature`` returns the signature in the wire form
the verifier expects (DER for ECDSA, as cosign, sigstore and securesystemslib use). Verification
lives in :mod:`attest.verify`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from attest import ijson
from attest.b64 import b64_decode, b64_encode
from attest.errors import AttestError

__all__ = [
    "Envelope",
    "EnvelopeJson",
    "Signature",
    "SignatureJson",
    "add_signature",
    "dumps_envelope",
    "envelope_from_json",
    "envelope_to_json",
    "loads_envelope",
    "pae",
    "sign_envelope",
]

Sign = Callable[[bytes], bytes]


class SignatureJson(TypedDict):
    """One entry of an envelope's ``signatures`` (DSSE envelope.md)."""

    keyid: NotRequired[str]
    sig: str


class EnvelopeJson(TypedDict):
    """The DSSE JSON envelope (DSSE envelope.md)."""

    payload: str
    payloadType: str
    signatures: list[SignatureJson]


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """One signature over an envelope's PAE; ``keyid`` is None when the envelope has none."""

    keyid: str | None
    sig: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A decoded DSSE envelope: the payload bytes as signed, their type and the signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        """Return the bytes every signature of this envelope covers."""
        return pae(self.payload_type, self.payload)


def pae(payload_type: str, payload: bytes) -> bytes:
    """Return ``PAE(UTF8(payload_type), payload)`` (DSSE protocol, "Signature Definition")."""
    try:
        type_bytes = payload_type.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AttestError("payload type is not valid Unicode text") from exc
    # LEN(s) is the byte length, not the character count: "exämple" is 8 bytes, 7 characters.
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_envelope(payload_type: str, payload: bytes, *, keyid: str | None, sign: Sign) -> Envelope:
    """Sign ``payload`` as ``payload_type`` and return a one-signature envelope.

    ``sign`` receives the PAE bytes and returns the signature in wire form (DER for ECDSA).
    """
    if not payload_type:
        # DSSE protocol: PAYLOAD_TYPE is required and must say how to interpret the payload.
        raise AttestError("payload type must not be empty")
    return add_signature(
        Envelope(payload_type=payload_type, payload=payload, signatures=()), keyid=keyid, sign=sign
    )


def add_signature(envelope: Envelope, *, keyid: str | None, sign: Sign) -> Envelope:
    """Return ``envelope`` with one more signature, made by ``sign`` over its PAE."""
    if keyid == "":
        raise AttestError("keyid must be None or a non-empty string")
    signature = Signature(keyid=keyid, sig=sign(envelope.pae()))
    if not signature.sig:
        raise AttestError("sign returned an empty signature")
    return Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=(*envelope.signatures, signature),
    )


def envelope_to_json(envelope: Envelope) -> EnvelopeJson:
    """Return the JSON envelope, with standard padded base64 for ``payload`` and ``sig``."""
    signatures: list[SignatureJson] = []
    for signature in envelope.signatures:
        entry: SignatureJson = {"sig": b64_encode(signature.sig)}
        if signature.keyid is not None:
            entry = {"keyid": signature.keyid, "sig": entry["sig"]}
        signatures.append(entry)
    return {
        "payload": b64_encode(envelope.payload),
        "payloadType": envelope.payload_type,
        "signatures": signatures,
    }


def dumps_envelope(envelope: Envelope) -> bytes:
    """Return the JSON envelope as compact UTF-8 bytes."""
    return ijson.dumps(envelope_to_json(envelope), "envelope")


def envelope_from_json(value: object, what: str = "envelope") -> Envelope:
    """Parse a decoded JSON envelope strictly; ``what`` prefixes error messages.

    Refuses unknown members, a missing or non-string member, bad base64 and an empty
    ``signatures``. An empty ``payloadType`` is kept as is: it is well-formed, and verification
    refuses it as an unsupported type (DSSE protocol, "To verify").
    """
    obj = ijson.expect_members(value, what, required=("payload", "payloadType", "signatures"))
    payload = b64_decode(obj["payload"], f"{what}: payload")
    payload_type = ijson.expect_str(obj["payloadType"], f"{what}: payloadType", empty=True)
    entries = ijson.expect_list(obj["signatures"], f"{what}: signatures")
    signatures = []
    for index, entry in enumerate(entries):
        where = f"{what}: signatures[{index}]"
        sig_obj = ijson.expect_members(entry, where, required=("sig",), optional=("keyid",))
        keyid = None
        if "keyid" in sig_obj:
            # Protobuf JSON writers (sigstore-js) may write "" for "no keyid"; keep it as given.
            keyid = ijson.expect_str(sig_obj["keyid"], f"{where}.keyid", empty=True)
        sig = b64_decode(sig_obj["sig"], f"{where}.sig")
        if not sig:
            raise AttestError(f"{where}.sig: must not be empty")
        signatures.append(Signature(keyid=keyid, sig=sig))
    return Envelope(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def loads_envelope(data: bytes) -> Envelope:
    """Parse JSON envelope bytes strictly (see :func:`envelope_from_json`)."""
    return envelope_from_json(ijson.loads(data, "envelope"))
