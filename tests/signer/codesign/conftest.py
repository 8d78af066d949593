"""A signing request, its approval at quorum and a local P-256 key standing in for the HSM."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest.intoto import Subject
from signer.approvals.rules import (
    ApprovalId,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalState,
    Decision,
    Vote,
)
from signer.codesign.outputs import ToSign, assemble, plan
from signer.codesign.records import Kind, OutputsJson, SigningRequest, SigningRequestId
from signer.codesign.requests import COSIGN_SIGN_V1

T0 = 1_800_000_000
ARTIFACT = b"acme-1.0.tar.gz contents"
DIGEST = hashlib.sha256(ARTIFACT).hexdigest()
SLSA = "https://slsa.dev/provenance/v1"
PROVENANCE: dict[str, Any] = {
    "buildDefinition": {"buildType": "https://ci.example/v1", "externalParameters": {}},
    "runDetails": {"builder": {"id": "https://ci.example"}},
}
KID = "test-kid"
MakeRequest = Callable[..., SigningRequest]


def make_request(kind: Kind = Kind.BLOB, **changes: Any) -> SigningRequest:
    """A pending request of ``kind`` over one subject."""
    name = "registry.example.com/acme/app" if kind is Kind.CONTAINER else "acme-1.0.tar.gz"
    predicate_type = {Kind.BLOB: None, Kind.CONTAINER: COSIGN_SIGN_V1}.get(kind, SLSA)
    fields: dict[str, Any] = {
        "id": SigningRequestId("sr_test"),
        "profile": "release",
        "kind": kind,
        "subjects": (Subject(name=name, sha256=DIGEST),),
        "predicate_type": predicate_type,
        "predicate": PROVENANCE if kind is Kind.ATTESTATION else None,
        "reason": "release 1.0",
        "change_id": "CHG-7",
        "requester": "ci",
        "created_at": T0,
        "approval_id": "apr_test",
    }
    fields.update(changes)
    return SigningRequest(**fields)


def approved(request: SigningRequest, *approvers: str) -> ApprovalRequest:
    """The request's approval, decided by ``approvers`` one second apart."""
    votes = tuple(
        Vote(approver=name, decision=Decision.APPROVE, comment="ok", at=T0 + 1 + i)
        for i, name in enumerate(approvers)
    )
    return ApprovalRequest(
        id=ApprovalId(request.approval_id),
        operation="signing",
        target=request.id,
        requester=request.requester,
        policy=ApprovalPolicy(
            group="release-managers", members=frozenset({"ann", "bob", "cat"}), required=2
        ),
        created_at=T0,
        expires_at=T0 + 3600,
        votes=votes,
        state=ApprovalState.APPROVED,
        version=1 + len(votes),
        details={},
        decided_at=T0 + len(votes),
        executed_at=None,
    )


def sign_items(key: ec.EllipticCurvePrivateKey, items: tuple[ToSign, ...]) -> Mapping[str, bytes]:
    """What the HSM does for each planned signature: ECDSA, prehashed where asked (DER)."""
    signatures = {}
    for item in items:
        if item.prehashed:
            signatures[item.output] = key.sign(item.data, ec.ECDSA(Prehashed(hashes.SHA256())))
        else:
            signatures[item.output] = key.sign(item.data, ec.ECDSA(hashes.SHA256()))
    return signatures


def signed_outputs(key: ec.EllipticCurvePrivateKey, request: SigningRequest) -> OutputsJson:
    """The outputs of ``request`` approved by ann and bob, signed by ``key``."""
    from signer.codesign.outputs import approval_predicate  # noqa: PLC0415

    predicate = approval_predicate(request, approved(request, "ann", "bob"))
    signatures = sign_items(key, plan(request, predicate))
    return assemble(request, predicate, hint=KID, signatures=signatures)


@pytest.fixture(scope="session")
def p256() -> ec.EllipticCurvePrivateKey:
    """The stand-in for the ring's active key."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def other_p256() -> ec.EllipticCurvePrivateKey:
    """A key that did not sign."""
    return ec.generate_private_key(ec.SECP256R1())
