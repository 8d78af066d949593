"""Our envelopes, payloads and bundles in independent Python implementations.

- securesystemslib verifies our DSSE envelopes (and refuses tampered ones);
- ``cryptography`` verifies a simple-signing signature over the exact payload bytes, as cosign
  does (and refuses a changed digest, reference or key);
- sigstore-models, the pydantic models of the Sigstore protobuf specs, parses our bundle JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError

# securesystemslib.signer re-exports SSlibKey without naming it in __all__.
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]
from sigstore_models.bundle.v1 import Bundle as ModelBundle

from attest.bundle import dumps_bundle, loads_bundle, sign_dsse_bundle, sign_message_bundle
from attest.dsse import dumps_envelope, sign_envelope
from attest.intoto import PAYLOAD_TYPE, Statement, Subject, dumps_statement
from attest.simplesigning import SimpleSigning, dumps_simple_signing
from tests.attest.signers import digest_signer, message_signer

_DIGEST = hashlib.sha256(b"artifact").digest()


def _statement(sha256: bytes = _DIGEST) -> bytes:
    return dumps_statement(
        Statement(
            subjects=(Subject(name="artifact.tgz", sha256=sha256.hex()),),
            predicate_type="https://slsa.dev/provenance/v1",
            predicate={
                "buildDefinition": {"buildType": "https://b/v1", "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://ci"}},
            },
        )
    )


def _sslib_key(key: ec.EllipticCurvePrivateKey, keyid: str) -> SSlibKey:
    # Load from PEM, as a relying party that was handed the public key would.
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SSlibKey.from_crypto(serialization.load_pem_public_key(pem), keyid=keyid)


def _sslib_envelope(document: dict[str, Any]) -> SslibEnvelope:
    return SslibEnvelope.from_dict(document)


def _signed_document(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    envelope = sign_envelope(PAYLOAD_TYPE, _statement(), keyid="k1", sign=message_signer(key))
    document: dict[str, Any] = json.loads(dumps_envelope(envelope))
    return document


def test_securesystemslib_verifies_our_envelope(p256: ec.EllipticCurvePrivateKey) -> None:
    envelope = _sslib_envelope(_signed_document(p256))

    accepted = envelope.verify([_sslib_key(p256, "k1")], threshold=1)

    assert set(accepted) == {"k1"}
    assert envelope.payload == _statement()
    assert envelope.payload_type == PAYLOAD_TYPE


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("change", ["payload-type", "subject", "digest"])
def test_securesystemslib_refuses_a_tampered_envelope(
    change: str, p256: ec.EllipticCurvePrivateKey
) -> None:
    document = _signed_document(p256)
    if change == "payload-type":
        document["payloadType"] = "application/vnd.other+json"
    elif change == "subject":
        statement = json.loads(_statement())
        statement["subject"][0]["name"] = "other.tgz"
        document["payload"] = _b64(json.dumps(statement).encode())
    else:
        document["payload"] = _b64(_statement(hashlib.sha256(b"other").digest()))

    with pytest.raises(SslibVerificationError):
        _sslib_envelope(document).verify([_sslib_key(p256, "k1")], threshold=1)


def test_securesystemslib_refuses_the_wrong_key(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(SslibVerificationError):
        _sslib_envelope(_signed_document(p256)).verify([_sslib_key(other_p256, "k1")], threshold=1)


_IMAGE_DIGEST = "sha256:" + hashlib.sha256(b"manifest").hexdigest()


def _simple_signing(digest: str = _IMAGE_DIGEST, reference: str = "reg.example/acme/app") -> bytes:
    return dumps_simple_signing(SimpleSigning(docker_reference=reference, manifest_digest=digest))


def test_cryptography_verifies_simple_signing_over_exact_bytes(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    payload = _simple_signing()
    signature = message_signer(p256)(payload)

    p256.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("change", ["digest", "reference", "type"])
def test_cryptography_refuses_a_changed_simple_signing_payload(
    change: str, p256: ec.EllipticCurvePrivateKey
) -> None:
    signature = message_signer(p256)(_simple_signing())
    if change == "digest":
        tampered = _simple_signing(digest="sha256:" + "0" * 64)
    elif change == "reference":
        tampered = _simple_signing(reference="reg.example/evil/app")
    else:
        tampered = _simple_signing().replace(b"cosign container image", b"atomic container image")

    with pytest.raises(InvalidSignature):
        p256.public_key().verify(signature, tampered, ec.ECDSA(hashes.SHA256()))


def test_cryptography_refuses_simple_signing_with_the_wrong_key(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    payload = _simple_signing()

    with pytest.raises(InvalidSignature):
        other_p256.public_key().verify(
            message_signer(p256)(payload), payload, ec.ECDSA(hashes.SHA256())
        )


def test_sigstore_models_parses_our_message_bundle(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="kid-1", sign=digest_signer(p256))

    model = ModelBundle.from_json(dumps_bundle(bundle))

    assert model.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert model.verification_material.public_key is not None
    assert model.verification_material.public_key.hint == "kid-1"
    assert model.verification_material.tlog_entries == []
    assert model.message_signature is not None
    assert model.message_signature.message_digest is not None
    assert model.message_signature.message_digest.digest == _DIGEST
    assert model.dsse_envelope is None


def test_sigstore_models_parses_our_dsse_bundle(p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))

    model = ModelBundle.from_json(dumps_bundle(bundle))

    assert model.dsse_envelope is not None
    assert model.dsse_envelope.payload == _statement()
    assert model.dsse_envelope.payload_type == PAYLOAD_TYPE
    assert model.dsse_envelope.signatures[0].keyid == "kid-1"
    assert model.message_signature is None


def test_sigstore_models_output_parses_back_into_our_bundle(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    """The two agree both ways: what sigstore-models writes, our strict parser reads."""
    bundle = sign_message_bundle(_DIGEST, hint="kid-1", sign=digest_signer(p256))

    assert loads_bundle(ModelBundle.from_json(dumps_bundle(bundle)).to_json().encode()) == bundle
