"""DSSE v1: PAE spec vectors, envelope JSON round trips and strict parsing, signed vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from attest.dsse import (
    Envelope,
    Signature,
    add_signature,
    dumps_envelope,
    envelope_from_json,
    envelope_to_json,
    loads_envelope,
    pae,
    sign_envelope,
)
from attest.errors import AttestError, VerificationError
from attest.keys import PublicKey
from attest.verify import verify_envelope
from jwks.jws import raw_to_der_ecdsa
from tests.attest.signers import message_signer

_DATA = json.loads((Path(__file__).parent / "data" / "dsse_vectors.json").read_text("utf-8"))
_PAE: list[dict[str, Any]] = _DATA["pae"]
_ENVELOPES: list[dict[str, Any]] = _DATA["envelopes"]


def _expected_pae(vector: dict[str, Any]) -> bytes:
    if "pae" in vector:
        return str(vector["pae"]).encode("utf-8")
    return bytes.fromhex(vector["pae_hex"])


@pytest.mark.parametrize("vector", _PAE, ids=[v["name"] for v in _PAE])
def test_pae_matches_spec_vector(vector: dict[str, Any]) -> None:
    assert pae(vector["payload_type"], bytes.fromhex(vector["payload_hex"])) == _expected_pae(
        vector
    )


def _vector_key(name: str) -> PublicKey:
    spec = _DATA["keys"][name]
    if spec["algorithm"] == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(spec["public_hex"]))
    numbers = ec.EllipticCurvePublicNumbers(int(spec["x"]), int(spec["y"]), ec.SECP256R1())
    return numbers.public_key()


def _vector_envelope(vector: dict[str, Any]) -> Envelope:
    envelope = envelope_from_json(vector["envelope"])
    if vector["name"] != "protocol-example":
        return envelope
    # protocol.md's example signature is raw r || s (Cryptodome); attest verifies DER.
    (signature,) = envelope.signatures
    der = raw_to_der_ecdsa(signature.sig)
    return Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=(Signature(keyid=signature.keyid, sig=der),),
    )


@pytest.mark.parametrize("vector", _ENVELOPES, ids=[v["name"] for v in _ENVELOPES])
def test_signed_vector_is_accepted_or_rejected_as_the_spec_says(vector: dict[str, Any]) -> None:
    envelope = _vector_envelope(vector)
    keys = {name: _vector_key(name) for name in vector["trusted"]}

    def verify() -> None:
        verify_envelope(
            envelope,
            trusted_keys=keys,
            payload_types=vector["payload_types"],
            threshold=vector["threshold"],
        )

    if vector["expect"] == "accept":
        verify()
    else:
        with pytest.raises(VerificationError):
            verify()


def test_sign_envelope_signs_the_pae_and_keeps_the_keyid(p256: ec.EllipticCurvePrivateKey) -> None:
    seen: list[bytes] = []

    def sign(data: bytes) -> bytes:
        seen.append(data)
        return message_signer(p256)(data)

    envelope = sign_envelope("application/vnd.example+json", b"{}", keyid="k1", sign=sign)

    assert seen == [b"DSSEv1 28 application/vnd.example+json 2 {}"]
    assert envelope.signatures[0].keyid == "k1"
    verify_envelope(
        envelope,
        trusted_keys={"k1": p256.public_key()},
        payload_types=["application/vnd.example+json"],
    )


def test_envelope_json_uses_padded_standard_base64(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope("t", b"\xfb\xff\xbf", keyid="k1", sign=message_signer(p256))

    wire = envelope_to_json(envelope)

    assert wire["payload"] == "+/+/"
    assert wire["payloadType"] == "t"
    assert base64.b64decode(wire["signatures"][0]["sig"], validate=True) == (
        envelope.signatures[0].sig
    )
    assert wire["signatures"][0]["keyid"] == "k1"


def test_envelope_round_trips_through_json_bytes(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope("t", b"payload", keyid=None, sign=message_signer(p256))
    envelope = add_signature(envelope, keyid="second", sign=message_signer(p256))

    data = dumps_envelope(envelope)

    assert loads_envelope(data) == envelope
    assert "keyid" not in json.loads(data)["signatures"][0]


def test_sign_envelope_refuses_an_empty_payload_type() -> None:
    with pytest.raises(AttestError, match="payload type must not be empty"):
        sign_envelope("", b"x", keyid="k", sign=lambda _: b"sig")


def test_sign_envelope_refuses_an_empty_signature() -> None:
    with pytest.raises(AttestError, match="empty signature"):
        sign_envelope("t", b"x", keyid="k", sign=lambda _: b"")


_GOOD: dict[str, object] = {
    "payload": "aGk=",
    "payloadType": "t",
    "signatures": [{"keyid": "k", "sig": "c2ln"}],
}


def _with(**changes: object) -> dict[str, object]:
    document = json.loads(json.dumps(_GOOD))
    for name, value in changes.items():
        if value is _DROP:
            del document[name]
        else:
            document[name] = value
    assert isinstance(document, dict)
    return document


_DROP = object()

_MALFORMED = [
    ("not-an-object", [], "expected an object"),
    ("missing-payload", _with(payload=_DROP), "missing member 'payload'"),
    ("missing-type", _with(payloadType=_DROP), "missing member 'payloadType'"),
    ("missing-signatures", _with(signatures=_DROP), "missing member 'signatures'"),
    ("unknown-member", _with(extra=1), "unknown member 'extra'"),
    ("payload-not-string", _with(payload=5), "payload: expected a base64 string"),
    ("payload-whitespace", _with(payload="aG k="), "not base64"),
    ("payload-mixed-alphabets", _with(payload="+_-/"), "not base64"),
    ("payload-bad-padding", _with(payload="aGk=="), "padding"),
    ("payload-stray-bits", _with(payload="aGl="), "non-zero padding bits"),
    ("type-not-string", _with(payloadType=None), "payloadType: expected a string"),
    ("no-signatures", _with(signatures=[]), "signatures: must not be empty"),
    ("signature-unknown-member", _with(signatures=[{"sig": "c2ln", "x": 1}]), "unknown member"),
    ("signature-missing-sig", _with(signatures=[{"keyid": "k"}]), "missing member 'sig'"),
    ("signature-empty-sig", _with(signatures=[{"sig": ""}]), "sig: must not be empty"),
    ("keyid-null", _with(signatures=[{"keyid": None, "sig": "c2ln"}]), "keyid: expected a string"),
]


@pytest.mark.parametrize(
    ("document", "message"),
    [(d, m) for _, d, m in _MALFORMED],
    ids=[name for name, _, _ in _MALFORMED],
)
def test_envelope_parsing_refuses_malformed_input(document: object, message: str) -> None:
    with pytest.raises(AttestError, match=message):
        envelope_from_json(document)


def test_envelope_parsing_accepts_url_safe_unpadded_base64() -> None:
    """DSSE protocol: verifiers MUST accept either alphabet; protobuf JSON drops padding."""
    envelope = envelope_from_json(_with(payload="-_-_Pj8", signatures=[{"sig": "c2ln"}]))

    assert envelope.payload == bytes.fromhex("fbffbf3e3f")
    assert envelope.signatures == (Signature(keyid=None, sig=b"sig"),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"payload":"aGk=","payload":"aGk=","payloadType":"t","signatures":[]}', "duplicate"),
        (b"\xff{}", "not UTF-8"),
        (b"{", "not JSON"),
        (b'{"payload": NaN}', "not JSON"),
        ("{}".encode("utf-8-sig"), "byte order mark"),
        (b'{"payload": 1e400}', "out of range"),
        (b'{"payload": ' + b"9" * 5000 + b"}", "not accepted"),
        (b'{"payloadType": "\\ud800"}', "not valid Unicode"),
        (b'{"\\udfff": 1}', "not valid Unicode"),
    ],
    ids=[
        "duplicate-member",
        "not-utf8",
        "truncated",
        "nan",
        "bom",
        "infinite",
        "over-4300-digits",
        "lone-surrogate",
        "lone-surrogate-name",
    ],
)
def test_envelope_bytes_must_be_i_json(data: bytes, message: str) -> None:
    with pytest.raises(AttestError, match=message):
        loads_envelope(data)
