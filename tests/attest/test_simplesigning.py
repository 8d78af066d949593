"""Cosign simple-signing payloads: exact bytes, strict parsing, verification and tampering."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from attest.errors import AttestError, VerificationError
from attest.simplesigning import SimpleSigning, dumps_simple_signing, loads_simple_signing
from attest.verify import verify_simple_signing
from tests.attest.signers import message_signer

_DIGEST = "sha256:" + "ab" * 32
_REFERENCE = "registry.example.com/acme/app"


def _payload(optional: dict[str, object] | None = None) -> SimpleSigning:
    return SimpleSigning(docker_reference=_REFERENCE, manifest_digest=_DIGEST, optional=optional)


def test_payload_bytes_are_cosigns_layout() -> None:
    assert dumps_simple_signing(_payload()) == (
        b'{"critical":{"identity":{"docker-reference":"registry.example.com/acme/app"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


def test_optional_members_are_sorted_like_a_go_map() -> None:
    data = dumps_simple_signing(_payload({"z": 1, "a": {"k": "v"}}))

    assert data.endswith(b'"optional":{"a":{"k":"v"},"z":1}}')


def test_payload_round_trips() -> None:
    payload = _payload({"creator": "signer"})

    assert loads_simple_signing(dumps_simple_signing(payload)) == payload


def test_missing_optional_parses_as_none() -> None:
    data = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": _REFERENCE},
                "image": {"docker-manifest-digest": _DIGEST},
                "type": "cosign container image signature",
            }
        }
    ).encode()

    assert loads_simple_signing(data).optional is None


def _document(**critical_changes: object) -> dict[str, object]:
    critical: dict[str, object] = {
        "identity": {"docker-reference": _REFERENCE},
        "image": {"docker-manifest-digest": _DIGEST},
        "type": "cosign container image signature",
    }
    critical.update(critical_changes)
    return {"critical": critical, "optional": None}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_document(extra=1), "critical: unknown member 'extra'"),
        (_document(type="atomic container signature"), "critical.type must be"),
        (
            _document(image={"Docker-manifest-digest": _DIGEST}),
            "missing member 'docker-manifest-digest'",
        ),
        (_document(image={"docker-manifest-digest": "sha512:" + "ab" * 64}), "'sha256:'"),
        (_document(image={"docker-manifest-digest": _DIGEST.upper()}), "'sha256:'"),
        (_document(identity={"docker-reference": "a b"}), "without whitespace"),
        (_document(identity={}), "missing member 'docker-reference'"),
        ({**_document(), "extra": 1}, "unknown member 'extra'"),
        ({**_document(), "optional": []}, "optional: expected an object"),
    ],
    ids=[
        "unknown-critical",
        "wrong-type",
        "digest-key-case",
        "sha512",
        "upper-hex",
        "whitespace-reference",
        "no-reference",
        "unknown-top",
        "optional-array",
    ],
)
def test_parsing_refuses_malformed_payloads(document: object, message: str) -> None:
    with pytest.raises(AttestError, match=message):
        loads_simple_signing(json.dumps(document).encode())


def test_signature_over_exact_bytes_verifies(p256: ec.EllipticCurvePrivateKey) -> None:
    data = dumps_simple_signing(_payload())
    signature = message_signer(p256)(data)

    parsed = verify_simple_signing(
        data, signature, public_key=p256.public_key(), expected_digest=_DIGEST
    )

    assert parsed == _payload()


def test_changed_digest_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    data = dumps_simple_signing(_payload())
    signature = message_signer(p256)(data)
    tampered = data.replace(b"ab" * 32, b"cd" * 32)

    with pytest.raises(VerificationError, match="does not verify"):
        verify_simple_signing(tampered, signature, public_key=p256.public_key())


def test_unexpected_digest_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    data = dumps_simple_signing(_payload())
    signature = message_signer(p256)(data)

    with pytest.raises(VerificationError, match="not sha256:cdcd"):
        verify_simple_signing(
            data, signature, public_key=p256.public_key(), expected_digest="sha256:" + "cd" * 32
        )


def test_wrong_key_fails(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    data = dumps_simple_signing(_payload())

    with pytest.raises(VerificationError, match="does not verify"):
        verify_simple_signing(data, message_signer(p256)(data), public_key=other_p256.public_key())


def test_equivalent_but_reformatted_payload_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    """The signature covers bytes, not meaning: re-serialised JSON is a different payload."""
    data = dumps_simple_signing(_payload())
    signature = message_signer(p256)(data)
    reformatted = json.dumps(json.loads(data), indent=1).encode()

    with pytest.raises(VerificationError):
        verify_simple_signing(reformatted, signature, public_key=p256.public_key())


def test_signed_garbage_is_a_verification_error(ed_key: ed25519.Ed25519PrivateKey) -> None:
    data = b'{"critical":{}}'

    with pytest.raises(VerificationError, match="signed payload is not valid"):
        verify_simple_signing(data, ed_key.sign(data), public_key=ed_key.public_key())
