"""Sigstore bundle v0.3 in the keyed form: a signature, the hint of the key, and nothing else.

A bundle (sigstore protobuf-specs ``sigstore_bundle.proto``, JSON by the protobuf JSON mapping)
packs a signature with the material to verify it. The signer's keys live in an HSM and are
distributed out of band (the JWKS, or a PEM), so the bundle names the key by ``hint`` and carries
no certificate, no transparency-log entry and no timestamp::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "<kid>"},
                              "tlogEntries": [],
                              "timestampVerificationData": {"rfc3161Timestamps": []}},
     "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": "<b64>"},
                          "signature": "<b64>"}}

or, instead of ``messageSignature``, ``"dsseEnvelope": {...}`` (a DSSE envelope with exactly one
signature, as sigstore clients require). ``tlogEntries`` is written even when empty because
sigstore-js and sigstore-models require it; verifiers must be told to expect no log entries and no
timestamps (thresholds of 0), and the key is trusted out of band.

**What ``sign`` receives.** For a DSSE bundle, the DSSE PAE bytes (sign them as a message). For a
message signature, the ``messageDigest`` itself: sigstore verifies a message signature as a
signature over the *artifact* (``ECDSA-SHA256(artifact)`` for a P-256 key, RSA PKCS#1 v1.5 with
SHA-256), and such a signature is exactly what signing the 32-byte digest *prehashed* yields
(``ec.ECDSA(Prehashed(SHA256()))``; on an HSM, ``CKM_ECDSA`` over the digest). So the message
``sign`` callable must sign its input as an already-computed digest, never hash it again.
Ed25519 cannot sign a digest in place of the message, so message signatures need an ECDSA or RSA
key. Signatures are in DER for ECDSA.

Parsing is strict: only v0.3 media types, only ``publicKey`` material with a non-empty hint, no
log entries or timestamps, exactly one of ``messageSignature`` and ``dsseEnvelope``, and no
unknown members; anything else is an :class:`AttestError` naming the member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NotRequired, TypedDict

from attest import ijson
from attest.b64 import b64_decode, b64_encode
from attest.dsse import Envelope, EnvelopeJson, envelope_from_json, envelope_to_json, sign_envelope
from attest.errors import AttestError

__all__ = [
    "MEDIA_TYPE",
    "Bundle",
    "BundleJson",
    "HashAlgorithm",
    "HashOutputJson",
    "MessageSignature",
    "MessageSignatureJson",
    "PublicKeyIdentifierJson",
    "TimestampVerificationDataJson",
    "VerificationMaterialJson",
    "bundle_from_json",
    "bundle_to_json",
    "dsse_bundle",
    "dumps_bundle",
    "loads_bundle",
    "sign_dsse_bundle",
    "sign_message_bundle",
]

Sign = Callable[[bytes], bytes]

MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
# protobuf-specs: v0.3 also has the older spelling; both name the same format.
_MEDIA_TYPES: Final = frozenset(
    {MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)


class HashAlgorithm(StrEnum):
    """The ``messageDigest`` algorithms supported (protobuf-specs ``HashAlgorithm``)."""

    SHA2_256 = "SHA2_256"
    SHA2_384 = "SHA2_384"

    @property
    def digest_size(self) -> int:
        """The digest length in bytes."""
        return 32 if self is HashAlgorithm.SHA2_256 else 48


class PublicKeyIdentifierJson(TypedDict):
    """``verificationMaterial.publicKey``: the key, named out of band."""

    hint: str


class TimestampVerificationDataJson(TypedDict):
    """``verificationMaterial.timestampVerificationData``: always empty here."""

    rfc3161Timestamps: list[object]


class VerificationMaterialJson(TypedDict):
    """``verificationMaterial`` in the keyed form."""

    publicKey: PublicKeyIdentifierJson
    tlogEntries: list[object]
    timestampVerificationData: TimestampVerificationDataJson


class HashOutputJson(TypedDict):
    """``messageSignature.messageDigest`` (protobuf-specs ``HashOutput``)."""

    algorithm: str
    digest: str


class MessageSignatureJson(TypedDict):
    """``messageSignature`` (protobuf-specs ``MessageSignature``)."""

    messageDigest: HashOutputJson
    signature: str


class BundleJson(TypedDict):
    """A keyed v0.3 bundle; exactly one of the content members is present."""

    mediaType: str
    verificationMaterial: VerificationMaterialJson
    messageSignature: NotRequired[MessageSignatureJson]
    dsseEnvelope: NotRequired[EnvelopeJson]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSignature:
    """A signature over an artifact, with the artifact's digest."""

    algorithm: HashAlgorithm
    digest: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != self.algorithm.digest_size:
            raise AttestError(
                f"a {self.algorithm} digest is {self.algorithm.digest_size} bytes, "
                f"not {len(self.digest)}"
            )
        if not self.signature:
            raise AttestError("signature must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A keyed bundle: the hint of the signing key and the signed content."""

    hint: str
    content: MessageSignature | Envelope

    def __post_init__(self) -> None:
        if not self.hint:
            raise AttestError("a keyed bundle needs a non-empty key hint")
        if isinstance(self.content, Envelope) and len(self.content.signatures) != 1:
            # sigstore-js and sigstore-python accept a DSSE bundle with exactly one signature.
            raise AttestError(
                f"a bundle's DSSE envelope has exactly one signature, not "
                f"{len(self.content.signatures)}"
            )


def sign_message_bundle(
    digest: bytes, *, hint: str, sign: Sign, algorithm: HashAlgorithm = HashAlgorithm.SHA2_256
) -> Bundle:
    """Return a message-signature bundle for an artifact with this ``digest``.

    ``sign`` receives ``digest`` and must sign it prehashed (see the module docstring).
    """
    if len(digest) != algorithm.digest_size:
        raise AttestError(
            f"a {algorithm} digest is {algorithm.digest_size} bytes, not {len(digest)}"
        )
    content = MessageSignature(algorithm=algorithm, digest=digest, signature=sign(digest))
    return Bundle(hint=hint, content=content)


def sign_dsse_bundle(payload_type: str, payload: bytes, *, hint: str, sign: Sign) -> Bundle:
    """Sign ``payload`` into a DSSE envelope and return it as a bundle.

    ``sign`` receives the PAE bytes. The envelope's ``keyid`` is the hint, as sigstore-js writes it.
    """
    return dsse_bundle(sign_envelope(payload_type, payload, keyid=hint, sign=sign), hint=hint)


def dsse_bundle(envelope: Envelope, *, hint: str) -> Bundle:
    """Wrap a one-signature DSSE envelope, signed by the key ``hint`` names, as a bundle."""
    return Bundle(hint=hint, content=envelope)


def bundle_to_json(bundle: Bundle) -> BundleJson:
    """Return the bundle JSON object (protobuf JSON mapping: camelCase, base64 bytes)."""
    result: BundleJson = {
        "mediaType": MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": bundle.hint},
            "tlogEntries": [],
            "timestampVerificationData": {"rfc3161Timestamps": []},
        },
    }
    content = bundle.content
    if isinstance(content, MessageSignature):
        result["messageSignature"] = {
            "messageDigest": {
                "algorithm": content.algorithm.value,
                "digest": b64_encode(content.digest),
            },
            "signature": b64_encode(content.signature),
        }
    else:
        result["dsseEnvelope"] = envelope_to_json(content)
    return result


def dumps_bundle(bundle: Bundle) -> bytes:
    """Return the bundle as compact UTF-8 JSON."""
    return ijson.dumps(bundle_to_json(bundle), "bundle")


def bundle_from_json(value: object) -> Bundle:
    """Parse a decoded keyed v0.3 bundle strictly (see the module docstring)."""
    what = "bundle"
    obj = ijson.expect_members(
        value,
        what,
        required=("mediaType", "verificationMaterial"),
        optional=("messageSignature", "dsseEnvelope"),
    )
    media_type = ijson.expect_str(obj["mediaType"], f"{what}: mediaType")
    if media_type not in _MEDIA_TYPES:
        raise AttestError(f"{what}: mediaType must be {MEDIA_TYPE!r}, not {media_type!r}")
    hint = _hint_from_material(obj["verificationMaterial"], f"{what}: verificationMaterial")
    present = [name for name in ("messageSignature", "dsseEnvelope") if name in obj]
    if len(present) != 1:
        raise AttestError(f"{what}: needs exactly one of 'messageSignature' and 'dsseEnvelope'")
    content: MessageSignature | Envelope
    if present[0] == "messageSignature":
        content = _message_signature_from_json(obj["messageSignature"], f"{what}: messageSignature")
    else:
        content = envelope_from_json(obj["dsseEnvelope"], f"{what}: dsseEnvelope")
        if len(content.signatures) != 1:
            raise AttestError(f"{what}: dsseEnvelope.signatures must hold exactly one signature")
    return Bundle(hint=hint, content=content)


def loads_bundle(data: bytes) -> Bundle:
    """Parse bundle JSON bytes strictly (see :func:`bundle_from_json`)."""
    return bundle_from_json(ijson.loads(data, "bundle"))


def _hint_from_material(value: object, what: str) -> str:
    material = ijson.expect_object(value, what)
    for name in ("certificate", "x509CertificateChain"):
        if name in material:
            raise AttestError(f"{what}: {name!r} is not supported; only keyed bundles (publicKey)")
    obj = ijson.expect_members(
        material,
        what,
        required=("publicKey", "tlogEntries"),
        optional=("timestampVerificationData",),
    )
    key = ijson.expect_members(obj["publicKey"], f"{what}.publicKey", required=("hint",))
    hint = ijson.expect_str(key["hint"], f"{what}.publicKey.hint")
    if ijson.expect_list(obj["tlogEntries"], f"{what}.tlogEntries", empty=True):
        raise AttestError(f"{what}.tlogEntries: transparency log entries are not supported")
    if "timestampVerificationData" in obj:
        data = ijson.expect_members(
            obj["timestampVerificationData"],
            f"{what}.timestampVerificationData",
            required=(),
            optional=("rfc3161Timestamps",),
        )
        stamps = ijson.expect_list(
            data.get("rfc3161Timestamps", []),
            f"{what}.timestampVerificationData.rfc3161Timestamps",
            empty=True,
        )
        if stamps:
            raise AttestError(
                f"{what}.timestampVerificationData.rfc3161Timestamps: timestamps are not supported"
            )
    return hint


def _message_signature_from_json(value: object, what: str) -> MessageSignature:
    obj = ijson.expect_members(value, what, required=("messageDigest", "signature"))
    digest_obj = ijson.expect_members(
        obj["messageDigest"], f"{what}.messageDigest", required=("algorithm", "digest")
    )
    name = ijson.expect_str(digest_obj["algorithm"], f"{what}.messageDigest.algorithm")
    try:
        algorithm = HashAlgorithm(name)
    except ValueError:
        supported = ", ".join(repr(member.value) for member in HashAlgorithm)
        raise AttestError(
            f"{what}.messageDigest.algorithm: {name!r} is not supported; expected {supported}"
        ) from None
    digest = b64_decode(digest_obj["digest"], f"{what}.messageDigest.digest")
    signature = b64_decode(obj["signature"], f"{what}.signature")
    try:
        return MessageSignature(algorithm=algorithm, digest=digest, signature=signature)
    except AttestError as exc:
        raise AttestError(f"{what}: {exc}") from exc
