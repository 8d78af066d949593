"""What a signed request's outputs are, as pure functions over the request and its approval.

Signing happens in two steps because the HSM is asynchronous and :mod:`attest` takes a
synchronous ``sign``: :func:`plan` lists the exact bytes each output's signature covers, the shell
signs them, and :func:`assemble` builds the outputs with those signatures. ``assemble`` rebuilds
every payload and refuses a signature made over other bytes, so the two steps cannot drift apart.

Outputs by kind (docs/codesign.md):

=============  ============================================================================
kind           outputs
=============  ============================================================================
blob           ``bundle``: message signature over the subject's SHA-256 (signed prehashed)
container      ``simple_signing``: the cosign payload and its signature; ``bundle``: a DSSE
               in-toto statement of type ``https://sigstore.dev/cosign/sign/v1``
attestation    ``bundle``: the requester's in-toto statement in a DSSE envelope
every kind     ``approval_bundle``: the approval statement (:mod:`attest.approval`) in DSSE
=============  ============================================================================

Signatures are DER for ECDSA (what cosign, sigstore and securesystemslib verify).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from attest.approval import (
    APPROVAL_PREDICATE_TYPE,
    Approval,
    ApprovalPolicy,
    ApprovalPredicate,
    SigningRequestRecord,
    approval_to_json,
)
from attest.b64 import b64_encode
from attest.bundle import bundle_to_json, sign_dsse_bundle, sign_message_bundle
from attest.dsse import pae
from attest.intoto import PAYLOAD_TYPE, Statement, dumps_statement
from attest.simplesigning import SimpleSigning, dumps_simple_signing
from signer.approvals.rules import ApprovalRequest, Decision
from signer.codesign.records import Kind, OutputsJson, SigningRequest
from signer.errors import SignerError

BUNDLE = "bundle"
SIMPLE_SIGNING = "simple_signing"
APPROVAL_BUNDLE = "approval_bundle"


class SignatureMismatch(SignerError):
    """A signature was made over other bytes than the output holds (a bug, never a client's)."""

    code = "signature_mismatch"
    title = "Signature mismatch"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToSign:
    """One signature an output needs: over ``data``, or over the digest ``data`` if prehashed."""

    output: str  # BUNDLE, SIMPLE_SIGNING or APPROVAL_BUNDLE
    data: bytes
    prehashed: bool  # data is a SHA-256 digest to sign as is (CKM_ECDSA), never hashed again
    digests: tuple[str, ...]  # the subjects' SHA-256 (hex) this signature vouches for


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def approval_predicate(request: SigningRequest, approval: ApprovalRequest) -> ApprovalPredicate:
    """The approval predicate of ``request``, from the approval that reached quorum."""
    if approval.decided_at is None:
        raise SignerError(f"approval {approval.id} has not been decided")
    eligible = approval.policy.members - {approval.requester}
    votes = [
        vote
        for vote in approval.votes
        if vote.decision is Decision.APPROVE and vote.approver in eligible
    ]
    # The predicate requires created <= every vote <= decided, but these times come from
    # separate clock reads, possibly on different replicas or across an NTP step back. Widen
    # the interval to hold every vote rather than refuse an approved request over clock skew.
    times = [vote.at for vote in votes]
    created = min([request.created_at, *times])
    decided = max([approval.decided_at, *times])
    return ApprovalPredicate(
        request=SigningRequestRecord(
            id=request.id,
            profile=request.profile,
            kind=request.kind.value,
            reason=request.reason,
            change_id=request.change_id,
            created=_time(created),
        ),
        requester=request.requester,
        policy=ApprovalPolicy(
            required=approval.policy.required, group=approval.policy.group, eligible=len(eligible)
        ),
        approvals=tuple(Approval(approver=v.approver, time=_time(v.at)) for v in votes),
        decided=_time(decided),
    )


def _approval_statement(request: SigningRequest, predicate: ApprovalPredicate) -> bytes:
    statement = Statement(
        subjects=request.subjects,
        predicate_type=APPROVAL_PREDICATE_TYPE,
        predicate=dict(approval_to_json(predicate)),
    )
    return dumps_statement(statement)


def _content_statement(request: SigningRequest) -> bytes:
    """The in-toto statement of a container or attestation request."""
    assert request.predicate_type is not None  # noqa: S101 -- set for these kinds by requests
    statement = Statement(
        subjects=request.subjects,
        predicate_type=request.predicate_type,
        predicate=dict(request.predicate or {}),
    )
    return dumps_statement(statement)


def _simple_signing(request: SigningRequest) -> bytes:
    subject = request.subjects[0]
    payload = SimpleSigning(
        docker_reference=subject.name, manifest_digest=f"sha256:{subject.sha256}"
    )
    return dumps_simple_signing(payload)


def plan(request: SigningRequest, predicate: ApprovalPredicate) -> tuple[ToSign, ...]:
    """Every signature ``request``'s outputs need, in the order they are made."""
    digests = tuple(request.digests)
    items: list[ToSign] = []
    if request.kind is Kind.BLOB:
        digest = bytes.fromhex(request.subjects[0].sha256)
        items.append(ToSign(output=BUNDLE, data=digest, prehashed=True, digests=digests))
    else:
        if request.kind is Kind.CONTAINER:
            items.append(
                ToSign(
                    output=SIMPLE_SIGNING,
                    data=_simple_signing(request),
                    prehashed=False,
                    digests=digests,
                )
            )
        statement = pae(PAYLOAD_TYPE, _content_statement(request))
        items.append(ToSign(output=BUNDLE, data=statement, prehashed=False, digests=digests))
    approval = pae(PAYLOAD_TYPE, _approval_statement(request, predicate))
    items.append(ToSign(output=APPROVAL_BUNDLE, data=approval, prehashed=False, digests=digests))
    return tuple(items)


def _presigned(expected: bytes, signature: bytes) -> Callable[[bytes], bytes]:
    """A ``sign`` for attest that returns ``signature`` for exactly the ``expected`` bytes."""

    def sign(data: bytes) -> bytes:
        if data != expected:
            raise SignatureMismatch("the planned bytes differ from the bytes being signed")
        return signature

    return sign


def assemble(
    request: SigningRequest,
    predicate: ApprovalPredicate,
    *,
    hint: str,
    signatures: Mapping[str, bytes],
) -> OutputsJson:
    """The outputs of ``request``, from the DER ``signatures`` of :func:`plan`'s items by output.

    ``hint`` is the kid of the key that signed: the bundles' ``publicKey.hint``.
    """
    items = {item.output: item for item in plan(request, predicate)}
    if set(items) != set(signatures):
        raise SignatureMismatch(
            f"expected signatures for {sorted(items)}, got {sorted(signatures)}"
        )

    def sign(output: str) -> Callable[[bytes], bytes]:
        return _presigned(items[output].data, signatures[output])

    outputs = OutputsJson()
    if request.kind is Kind.BLOB:
        digest = bytes.fromhex(request.subjects[0].sha256)
        bundle = sign_message_bundle(digest, hint=hint, sign=sign(BUNDLE))
    else:
        bundle = sign_dsse_bundle(
            PAYLOAD_TYPE, _content_statement(request), hint=hint, sign=sign(BUNDLE)
        )
    if request.kind is Kind.CONTAINER:
        payload = _simple_signing(request)
        outputs["simple_signing"] = {
            "payload": b64_encode(payload),
            "signature": b64_encode(sign(SIMPLE_SIGNING)(payload)),
        }
    outputs["bundle"] = bundle_to_json(bundle)
    approval = sign_dsse_bundle(
        PAYLOAD_TYPE,
        _approval_statement(request, predicate),
        hint=hint,
        sign=sign(APPROVAL_BUNDLE),
    )
    outputs["approval_bundle"] = bundle_to_json(approval)
    return outputs
