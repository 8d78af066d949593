"""Outputs built from planned signatures verify with attest, securesystemslib and cryptography."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError

# securesystemslib.signer re-exports SSlibKey without naming it in __all__.
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

from attest.approval import APPROVAL_PREDICATE_TYPE, approval_from_json
from attest.bundle import bundle_from_json
from attest.errors import VerificationError
from attest.verify import verify_bundle, verify_simple_signing
from signer.codesign.outputs import (
    APPROVAL_BUNDLE,
    BUNDLE,
    SIMPLE_SIGNING,
    SignatureMismatch,
    approval_predicate,
    assemble,
    plan,
)
from signer.codesign.records import Kind
from signer.codesign.requests import COSIGN_SIGN_V1
from tests.signer.codesign.conftest import (
    DIGEST,
    KID,
    T0,
    approved,
    make_request,
    sign_items,
    signed_outputs,
)


def test_a_blob_gets_a_message_signature_and_an_approval_bundle(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    outputs = signed_outputs(p256, make_request(Kind.BLOB))
    assert sorted(outputs) == ["approval_bundle", "bundle"]
    bundle = bundle_from_json(outputs["bundle"])
    verified = verify_bundle(
        bundle, trusted_keys={KID: p256.public_key()}, artifact_digest=bytes.fromhex(DIGEST)
    )
    assert verified.message_digest == bytes.fromhex(DIGEST)
    assert outputs["bundle"]["verificationMaterial"]["publicKey"]["hint"] == KID


def test_a_blob_signature_does_not_verify_for_another_digest(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    bundle = bundle_from_json(signed_outputs(p256, make_request(Kind.BLOB))["bundle"])
    other = hashlib.sha256(b"other").digest()
    with pytest.raises(VerificationError):
        verify_bundle(bundle, trusted_keys={KID: p256.public_key()}, artifact_digest=other)


def test_the_approval_statement_records_who_approved_which_digest(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    request = make_request(Kind.ATTESTATION)
    outputs = signed_outputs(p256, request)
    verified = verify_bundle(
        bundle_from_json(outputs["approval_bundle"]), trusted_keys={KID: p256.public_key()}
    )
    assert verified.statement is not None
    assert verified.statement.predicate_type == APPROVAL_PREDICATE_TYPE
    assert verified.statement.digests() == {DIGEST}
    predicate = approval_from_json(verified.statement.predicate)
    assert predicate.request.id == "sr_test"
    assert predicate.request.change_id == "CHG-7"
    assert predicate.requester == "ci"
    assert (predicate.policy.required, predicate.policy.eligible) == (2, 3)
    assert [a.approver for a in predicate.approvals] == ["ann", "bob"]


def test_a_container_gets_simple_signing_over_the_exact_payload(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    outputs = signed_outputs(p256, make_request(Kind.CONTAINER))
    simple = outputs["simple_signing"]
    payload = base64.b64decode(simple["payload"])
    signature = base64.b64decode(simple["signature"])
    p256.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    parsed = verify_simple_signing(
        payload, signature, public_key=p256.public_key(), expected_digest=f"sha256:{DIGEST}"
    )
    assert parsed.docker_reference == "registry.example.com/acme/app"
    statement = verify_bundle(
        bundle_from_json(outputs["bundle"]), trusted_keys={KID: p256.public_key()}
    ).statement
    assert statement is not None
    assert statement.predicate_type == COSIGN_SIGN_V1


def test_a_changed_simple_signing_payload_or_key_fails(
    p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    simple = signed_outputs(p256, make_request(Kind.CONTAINER))["simple_signing"]
    payload = base64.b64decode(simple["payload"])
    signature = base64.b64decode(simple["signature"])
    changed = payload.replace(DIGEST.encode(), hashlib.sha256(b"x").hexdigest().encode())
    with pytest.raises(InvalidSignature):
        p256.public_key().verify(signature, changed, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        other_p256.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))


def _sslib(key: ec.EllipticCurvePrivateKey) -> SSlibKey:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SSlibKey.from_crypto(serialization.load_pem_public_key(pem), keyid=KID)


def test_securesystemslib_verifies_the_attestation_envelope(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    envelope = signed_outputs(p256, make_request(Kind.ATTESTATION))["bundle"]["dsseEnvelope"]
    accepted = SslibEnvelope.from_dict(dict(envelope)).verify([_sslib(p256)], threshold=1)
    assert set(accepted) == {KID}


@pytest.mark.parametrize("change", ["payload-type", "subject", "digest", "key"])
def test_securesystemslib_refuses_a_changed_envelope(
    change: str, p256: ec.EllipticCurvePrivateKey, other_p256: ec.EllipticCurvePrivateKey
) -> None:
    document: dict[str, Any] = dict(
        signed_outputs(p256, make_request(Kind.ATTESTATION))["bundle"]["dsseEnvelope"]
    )
    statement = json.loads(base64.b64decode(document["payload"]))
    if change == "payload-type":
        document["payloadType"] = "application/vnd.other+json"
    elif change == "subject":
        statement["subject"][0]["name"] = "other.tar.gz"
    elif change == "digest":
        statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"x").hexdigest()
    if change in ("subject", "digest"):
        document["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    key = other_p256 if change == "key" else p256
    with pytest.raises(SslibVerificationError):
        SslibEnvelope.from_dict(document).verify([_sslib(key)], threshold=1)


def test_plan_signs_the_blob_digest_prehashed_and_statements_as_messages() -> None:
    request = make_request(Kind.CONTAINER)
    items = plan(request, approval_predicate(request, approved(request, "ann", "bob")))
    assert [(i.output, i.prehashed) for i in items] == [
        (SIMPLE_SIGNING, False),
        (BUNDLE, False),
        (APPROVAL_BUNDLE, False),
    ]
    blob = make_request(Kind.BLOB)
    first = plan(blob, approval_predicate(blob, approved(blob, "ann", "bob")))[0]
    assert (first.output, first.prehashed, first.data) == (BUNDLE, True, bytes.fromhex(DIGEST))


def test_assemble_needs_exactly_the_planned_signatures(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    request = make_request(Kind.ATTESTATION)
    predicate = approval_predicate(request, approved(request, "ann", "bob"))
    signatures = dict(sign_items(p256, plan(request, predicate)))
    with pytest.raises(SignatureMismatch):
        assemble(request, predicate, hint=KID, signatures={**signatures, SIMPLE_SIGNING: b"x"})
    del signatures[APPROVAL_BUNDLE]
    with pytest.raises(SignatureMismatch):
        assemble(request, predicate, hint=KID, signatures=signatures)


def test_the_requester_never_counts_among_the_approvers() -> None:
    request = make_request(Kind.BLOB, requester="ann")
    predicate = approval_predicate(request, approved(request, "bob", "cat"))
    assert predicate.policy.eligible == 2
    assert [a.approver for a in predicate.approvals] == ["bob", "cat"]


def test_clock_skew_between_replicas_widens_the_predicate_times() -> None:
    """A vote stamped before the request was created, or after the quorum, still signs."""
    request = make_request(Kind.BLOB)
    approval = approved(request, "ann", "bob")
    early = replace(approval.votes[0], at=T0 - 5)  # ann's replica runs 5 s behind
    late = replace(approval.votes[1], at=T0 + 9)  # bob's vote is later than decided_at
    skewed = replace(approval, votes=(early, late), decided_at=T0 + 2)
    predicate = approval_predicate(request, skewed)
    assert predicate.request.created == datetime.fromtimestamp(T0 - 5, UTC)
    assert predicate.decided == datetime.fromtimestamp(T0 + 9, UTC)
    assert [a.time for a in predicate.approvals] == [
        datetime.fromtimestamp(T0 - 5, UTC),
        datetime.fromtimestamp(T0 + 9, UTC),
    ]
