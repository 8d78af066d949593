"""Sigstore bundle v0.3 (keyed): building, JSON shape, round trips and strict parsing."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attest.bundle import (
    MEDIA_TYPE,
    Bundle,
    HashAlgorithm,
    MessageSignature,
    bundle_from_json,
    bundle_to_json,
    dsse_bundle,
    dumps_bundle,
    loads_bundle,
    sign_dsse_bundle,
    sign_message_bundle,
)
from attest.dsse import sign_envelope
from attest.errors import AttestError
from tests.attest.signers import digest_signer, message_signer

_DIGEST = hashlib.sha256(b"artifact").digest()


def test_message_bundle_json_is_the_keyed_v03_shape(p256: ec.EllipticCurvePrivateKey) -> None:
    seen: list[bytes] = []

    def sign(data: bytes) -> bytes:
        seen.append(data)
        return digest_signer(p256)(data)

    wire = bundle_to_json(sign_message_bundle(_DIGEST, hint="kid-1", sign=sign))

    assert seen == [_DIGEST], "the message sign callable receives the digest, to sign prehashed"
    assert wire["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert wire["verificationMaterial"] == {
        "publicKey": {"hint": "kid-1"},
        "tlogEntries": [],
        "timestampVerificationData": {"rfc3161Timestamps": []},
    }
    message = wire["messageSignature"]
    assert message["messageDigest"] == {
        "algorithm": "SHA2_256",
        "digest": base64.b64encode(_DIGEST).decode(),
    }
    assert base64.b64decode(message["signature"], validate=True)
    assert "dsseEnvelope" not in wire


def test_dsse_bundle_uses_the_hint_as_keyid(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle("t", b"{}", hint="kid-1", sign=message_signer(p256))

    wire = bundle_to_json(bundle)

    assert wire["dsseEnvelope"]["signatures"][0]["keyid"] == "kid-1"
    assert "messageSignature" not in wire


@pytest.mark.parametrize("kind", ["message", "dsse"])
def test_bundle_round_trips(kind: str, p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = (
        sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(p256))
        if kind == "message"
        else sign_dsse_bundle("t", b"payload", hint="k", sign=message_signer(p256))
    )

    assert loads_bundle(dumps_bundle(bundle)) == bundle


def test_sha384_message_digest_round_trips() -> None:
    bundle = Bundle(
        hint="k",
        content=MessageSignature(
            algorithm=HashAlgorithm.SHA2_384, digest=b"\x01" * 48, signature=b"s"
        ),
    )

    assert loads_bundle(dumps_bundle(bundle)) == bundle


def test_message_digest_length_must_match_algorithm() -> None:
    with pytest.raises(AttestError, match="SHA2_256 digest is 32 bytes, not 31"):
        sign_message_bundle(b"\x00" * 31, hint="k", sign=lambda _: b"s")


def test_dsse_bundle_needs_exactly_one_signature(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope("t", b"x", keyid="a", sign=message_signer(p256))
    two = sign_envelope("t", b"x", keyid="a", sign=message_signer(p256))
    both = type(envelope)(
        payload_type="t", payload=b"x", signatures=envelope.signatures + two.signatures
    )

    with pytest.raises(AttestError, match="exactly one signature, not 2"):
        dsse_bundle(both, hint="a")


def test_empty_hint_is_refused() -> None:
    with pytest.raises(AttestError, match="non-empty key hint"):
        sign_message_bundle(_DIGEST, hint="", sign=lambda _: b"s")


def _good() -> dict[str, Any]:
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=lambda _: b"sig")
    document: dict[str, Any] = json.loads(dumps_bundle(bundle))
    return document


def _changed(path: str, value: object) -> dict[str, Any]:
    document = _good()
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return document


_DROP = object()

_MALFORMED = [
    (
        "media-type-v02",
        _changed("mediaType", "application/vnd.dev.sigstore.bundle+json;version=0.2"),
        "mediaType must be",
    ),
    ("unknown-member", _changed("extra", 1), "unknown member 'extra'"),
    ("no-content", _changed("messageSignature", _DROP), "exactly one of"),
    (
        "certificate",
        _changed("verificationMaterial.certificate", {"rawBytes": "AA=="}),
        "only keyed bundles",
    ),
    ("chain", _changed("verificationMaterial.x509CertificateChain", {}), "only keyed bundles"),
    (
        "no-public-key",
        _changed("verificationMaterial.publicKey", _DROP),
        "missing member 'publicKey'",
    ),
    ("empty-hint", _changed("verificationMaterial.publicKey.hint", ""), "hint: must not be empty"),
    ("no-tlog-entries", _changed("verificationMaterial.tlogEntries", _DROP), "'tlogEntries'"),
    (
        "tlog-entry",
        _changed("verificationMaterial.tlogEntries", [{}]),
        "log entries are not supported",
    ),
    (
        "timestamp",
        _changed("verificationMaterial.timestampVerificationData", {"rfc3161Timestamps": [{}]}),
        "timestamps are not supported",
    ),
    (
        "unknown-algorithm",
        _changed("messageSignature.messageDigest.algorithm", "SHA3_256"),
        "not supported",
    ),
    ("short-digest", _changed("messageSignature.messageDigest.digest", "AAAA"), "32 bytes, not 3"),
    ("no-digest", _changed("messageSignature.messageDigest", _DROP), "'messageDigest'"),
    ("bad-signature-b64", _changed("messageSignature.signature", "%%%"), "not base64"),
    ("empty-signature", _changed("messageSignature.signature", ""), "signature must not be empty"),
]


@pytest.mark.parametrize(
    ("document", "message"),
    [(d, m) for _, d, m in _MALFORMED],
    ids=[name for name, _, _ in _MALFORMED],
)
def test_bundle_parsing_refuses_malformed_input(document: object, message: str) -> None:
    with pytest.raises(AttestError, match=message):
        bundle_from_json(document)


def test_both_contents_are_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    document = _good()
    dsse = bundle_to_json(sign_dsse_bundle("t", b"x", hint="k", sign=message_signer(p256)))
    document["dsseEnvelope"] = dsse["dsseEnvelope"]

    with pytest.raises(AttestError, match="exactly one of"):
        bundle_from_json(document)


def test_legacy_v03_media_type_and_omitted_timestamps_parse() -> None:
    document = _changed("mediaType", "application/vnd.dev.sigstore.bundle+json;version=0.3")
    del document["verificationMaterial"]["timestampVerificationData"]

    assert bundle_from_json(document).hint == "k"
    assert bundle_to_json(bundle_from_json(document))["mediaType"] == MEDIA_TYPE
