"""Offline verification over explicit keys: every key scheme, and every kind of tampering."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attest.bundle import (
    Bundle,
    HashAlgorithm,
    MessageSignature,
    sign_dsse_bundle,
    sign_message_bundle,
)
from attest.dsse import Envelope, Signature, sign_envelope
from attest.errors import AttestError, VerificationError
from attest.intoto import PAYLOAD_TYPE, Statement, Subject, dumps_statement
from attest.keys import RsaPssPublicKey, verify_digest_signature, verify_message_signature
from attest.verify import verify_bundle, verify_envelope
from tests.attest.signers import (
    PrivateKey,
    digest_signer,
    message_signer,
    public,
    tampered_envelope,
)

_ARTIFACT = b"acme-1.0.tar.gz contents"
_DIGEST = hashlib.sha256(_ARTIFACT).digest()
_OTHER_DIGEST = hashlib.sha256(b"something else").digest()


def _statement(sha256: bytes = _DIGEST, name: str = "acme-1.0.tar.gz") -> bytes:
    statement = Statement(
        subjects=(Subject(name=name, sha256=sha256.hex()),),
        predicate_type="https://example.com/predicate/v1",
        predicate={"ok": True},
    )
    return dumps_statement(statement)


_SCHEMES = ["p256", "p384", "rsa-pkcs1", "rsa-pss", "ed25519"]


@pytest.fixture
def scheme_key(
    request: pytest.FixtureRequest,
    p256: ec.EllipticCurvePrivateKey,
    p384: ec.EllipticCurvePrivateKey,
    rsa2048: rsa.RSAPrivateKey,
    ed_key: ed25519.Ed25519PrivateKey,
) -> tuple[PrivateKey, bool]:
    """The private key for a scheme name, and whether it signs PSS."""
    keys: dict[str, PrivateKey] = {
        "p256": p256,
        "p384": p384,
        "rsa-pkcs1": rsa2048,
        "rsa-pss": rsa2048,
        "ed25519": ed_key,
    }
    name: str = request.param
    return keys[name], name == "rsa-pss"


@pytest.mark.parametrize("scheme_key", _SCHEMES, indirect=True)
def test_dsse_bundle_verifies_with_each_key_scheme(scheme_key: tuple[PrivateKey, bool]) -> None:
    key, pss = scheme_key
    bundle = sign_dsse_bundle(
        PAYLOAD_TYPE, _statement(), hint="k", sign=message_signer(key, pss=pss)
    )

    verified = verify_bundle(
        bundle, trusted_keys={"k": public(key, pss=pss)}, artifact_digest=_DIGEST
    )

    assert verified.hint == "k"
    assert verified.statement is not None
    assert verified.statement.digests() == {_DIGEST.hex()}
    assert verified.message_digest is None


def test_p384_message_bundle_verifies_with_a_sha384_digest(
    p384: ec.EllipticCurvePrivateKey,
) -> None:
    digest = hashlib.sha384(_ARTIFACT).digest()
    bundle = sign_message_bundle(
        digest,
        hint="k",
        sign=digest_signer(p384, algorithm=hashes.SHA384()),
        algorithm=HashAlgorithm.SHA2_384,
    )

    verified = verify_bundle(bundle, trusted_keys={"k": p384.public_key()}, artifact_digest=digest)

    assert verified.message_digest == digest


@pytest.mark.parametrize(
    ("key_name", "algorithm", "hash_"),
    [
        ("p256", HashAlgorithm.SHA2_384, hashes.SHA384()),
        ("p384", HashAlgorithm.SHA2_256, hashes.SHA256()),
        ("rsa2048", HashAlgorithm.SHA2_384, hashes.SHA384()),
    ],
)
def test_a_digest_of_another_hash_than_the_keys_is_refused(
    request: pytest.FixtureRequest,
    key_name: str,
    algorithm: HashAlgorithm,
    hash_: hashes.HashAlgorithm,
) -> None:
    """ECDSA truncates a longer digest: without this binding a P-256 signature over a SHA-256
    digest would also 'verify' a forged SHA-384 digest that starts with the same 32 bytes."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = request.getfixturevalue(key_name)
    real = hashlib.new(hash_.name, _ARTIFACT).digest()
    signed = digest_signer(key, algorithm=hash_)(real)
    forged = Bundle(
        hint="k",
        content=MessageSignature(algorithm=algorithm, digest=real, signature=signed),
    )

    with pytest.raises(VerificationError, match="this key verifies"):
        verify_bundle(forged, trusted_keys={"k": key.public_key()}, artifact_digest=real)


def test_a_p256_signature_does_not_verify_a_sha384_digest_extending_its_digest(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    signature = digest_signer(p256)(_DIGEST)
    extended = _DIGEST + b"\x00" * 16  # 48 bytes whose first 32 are the signed digest

    with pytest.raises(VerificationError, match="this key verifies SHA256 digests, not SHA384"):
        verify_digest_signature(p256.public_key(), extended, hashes.SHA384(), signature)


@pytest.mark.parametrize("scheme_key", ["p256", "rsa-pkcs1", "rsa-pss"], indirect=True)
def test_message_bundle_verifies_with_each_digest_capable_scheme(
    scheme_key: tuple[PrivateKey, bool],
) -> None:
    key, pss = scheme_key
    assert not isinstance(key, ed25519.Ed25519PrivateKey)
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(key, pss=pss))

    verified = verify_bundle(
        bundle, trusted_keys={"k": public(key, pss=pss)}, artifact_digest=_DIGEST
    )

    assert verified.message_digest == _DIGEST
    assert verified.statement is None


def test_prehashed_message_signature_equals_a_signature_over_the_artifact(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    """What sigstore checks: ECDSA-SHA256(artifact) verifies the digest-signed bundle."""
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(p256))
    assert isinstance(bundle.content, MessageSignature)

    assert verify_message_signature(p256.public_key(), _ARTIFACT, bundle.content.signature)


def test_ed25519_cannot_verify_a_message_bundle(ed_key: ed25519.Ed25519PrivateKey) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=ed_key.sign)

    with pytest.raises(VerificationError, match="Ed25519 key cannot verify"):
        verify_bundle(bundle, trusted_keys={"k": ed_key.public_key()})


def test_pss_signature_does_not_verify_as_pkcs1(rsa2048: rsa.RSAPrivateKey) -> None:
    """Each key has one scheme: the signature cannot choose a different padding."""
    bundle = sign_dsse_bundle(
        PAYLOAD_TYPE, _statement(), hint="k", sign=message_signer(rsa2048, pss=True)
    )

    with pytest.raises(VerificationError, match="does not verify"):
        verify_bundle(bundle, trusted_keys={"k": rsa2048.public_key()})


def test_unknown_hint_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(p256))

    with pytest.raises(VerificationError, match="key hint 'k' is not a trusted key"):
        verify_bundle(bundle, trusted_keys={"other": p256.public_key()})


@pytest.mark.parametrize("kind", ["message", "dsse"])
def test_wrong_key_fails(
    kind: str, p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    bundle = (
        sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(p256))
        if kind == "message"
        else sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="k", sign=message_signer(p256))
    )

    with pytest.raises(VerificationError, match="does not verify with key 'k'"):
        verify_bundle(bundle, trusted_keys={"k": other_p256.public_key()})


def test_message_bundle_for_another_artifact_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(p256))

    with pytest.raises(VerificationError, match="is not the artifact's digest"):
        verify_bundle(bundle, trusted_keys={"k": p256.public_key()}, artifact_digest=_OTHER_DIGEST)


def test_changed_message_digest_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="k", sign=digest_signer(p256))
    assert isinstance(bundle.content, MessageSignature)
    tampered = Bundle(hint="k", content=dataclasses.replace(bundle.content, digest=_OTHER_DIGEST))

    with pytest.raises(VerificationError, match="message signature does not verify"):
        verify_bundle(
            tampered, trusted_keys={"k": p256.public_key()}, artifact_digest=_OTHER_DIGEST
        )


def test_changed_payload_type_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="k", sign=message_signer(p256))
    tampered = tampered_envelope(bundle, payload_type="application/vnd.other+json")

    with pytest.raises(VerificationError, match="DSSE signature does not verify"):
        verify_bundle(tampered, trusted_keys={"k": p256.public_key()})


def test_signed_but_wrong_payload_type_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle("application/json", _statement(), hint="k", sign=message_signer(p256))

    with pytest.raises(VerificationError, match="payload type 'application/json' is not"):
        verify_bundle(bundle, trusted_keys={"k": p256.public_key()})


def test_changed_subject_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="k", sign=message_signer(p256))
    tampered = tampered_envelope(bundle, payload=_statement(sha256=_OTHER_DIGEST))

    with pytest.raises(VerificationError, match="DSSE signature does not verify"):
        verify_bundle(tampered, trusted_keys={"k": p256.public_key()})


def test_statement_about_another_artifact_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="k", sign=message_signer(p256))

    with pytest.raises(VerificationError, match="no subject of the statement has sha256"):
        verify_bundle(bundle, trusted_keys={"k": p256.public_key()}, artifact_digest=_OTHER_DIGEST)


def test_signed_payload_that_is_not_a_statement_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, b'{"_type":"x"}', hint="k", sign=message_signer(p256))

    with pytest.raises(VerificationError, match="not a valid statement"):
        verify_bundle(bundle, trusted_keys={"k": p256.public_key()})


def test_envelope_keyid_does_not_override_the_bundle_hint(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    """The keyid is an unauthenticated hint; the bundle's verification material decides."""
    envelope = sign_envelope(PAYLOAD_TYPE, _statement(), keyid="evil", sign=message_signer(p256))
    bundle = Bundle(hint="k", content=envelope)

    verify_bundle(bundle, trusted_keys={"k": p256.public_key(), "evil": other_p256.public_key()})


def test_envelope_threshold_counts_distinct_keys(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    envelope = sign_envelope(PAYLOAD_TYPE, _statement(), keyid="a", sign=message_signer(p256))
    keys = {"a": p256.public_key(), "b": other_p256.public_key()}
    doubled = Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=envelope.signatures * 2,
    )

    with pytest.raises(VerificationError, match="1 of the 2 required"):
        verify_envelope(doubled, trusted_keys=keys, threshold=2)


def test_envelope_signature_by_untrusted_keyid_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(PAYLOAD_TYPE, _statement(), keyid="x", sign=message_signer(p256))

    with pytest.raises(VerificationError, match="keyid 'x' is not a trusted key"):
        verify_envelope(envelope, trusted_keys={"a": p256.public_key()})


def test_envelope_without_keyid_tries_every_trusted_key(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    envelope = sign_envelope(PAYLOAD_TYPE, _statement(), keyid=None, sign=message_signer(p256))

    verified = verify_envelope(
        envelope, trusted_keys={"b": other_p256.public_key(), "a": p256.public_key()}
    )

    assert verified.keyids == {"a"}
    assert verified.payload == _statement()


def test_envelope_with_a_changed_signature_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(PAYLOAD_TYPE, _statement(), keyid="a", sign=message_signer(p256))
    broken = dataclasses.replace(
        envelope, signatures=(Signature(keyid="a", sig=b"\x30\x06\x02\x01\x01\x02\x01\x01"),)
    )

    with pytest.raises(VerificationError, match="signature 0: does not verify with 'a'"):
        verify_envelope(broken, trusted_keys={"a": p256.public_key()})


def test_threshold_below_one_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(PAYLOAD_TYPE, b"{}", keyid="a", sign=message_signer(p256))

    with pytest.raises(AttestError, match="threshold must be at least 1"):
        verify_envelope(envelope, trusted_keys={"a": p256.public_key()}, threshold=0)


def test_unsupported_curve_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP521R1())

    with pytest.raises(VerificationError, match="unsupported ECDSA curve secp521r1"):
        verify_message_signature(key.public_key(), b"x", message_signer(key)(b"x"))


def test_short_rsa_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505

    with pytest.raises(VerificationError, match="at least 2048 bits"):
        verify_message_signature(RsaPssPublicKey(key=key.public_key()), b"x", b"sig")


def test_digest_length_must_match_hash(p256: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(VerificationError, match="32 bytes, not 5"):
        verify_digest_signature(p256.public_key(), b"short", hashes.SHA256(), b"sig")
