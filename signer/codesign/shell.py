"""The code-signing shell: persists signing requests, opens their approvals, signs at quorum.

``create`` checks everything first (requester, profile, that quorum is reachable without the
requester), then opens the approval for a request id it chose and inserts the request already
linked to it, so no reader ever sees a request without its approval. The approvals engine runs
the ``signing`` operation exactly once, for the vote that reached quorum (a compare-and-set on
the approval); :meth:`CodeSigning.run` signs every output with the profile ring's active key on
the HSM and stores the outputs together with one ``signing.sign`` audit record per signature, in
one transaction, so no signature exists in the store without its audit record. A resumed run
(after a crash) finds the outputs already stored and returns them without signing again.

A run at quorum that failed (HSM unavailable, no active key, a lost compare-and-set) leaves the
approval ``approved``; reading the request retries it (at most every ``RETRY_AFTER_S``), so it
gets signed once the cause is gone, without waiting for a restart's ``resume``.

A request whose approval was denied or expired is closed (``denied``/``expired``) the first
time it is read and never gets outputs: ``with_outputs`` refuses anything but ``pending``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from jwks.algorithms import Alg
from jwks.jws import raw_to_der_ecdsa
from signer.approvals.rules import (
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalState,
    Decision,
    QuorumUnreachable,
    UnknownApproval,
)
from signer.approvals.shell import Approvals
from signer.audit.writer import AuditWriter
from signer.auth import Principal, require
from signer.codesign import outputs as out
from signer.codesign.records import (
    RequestState,
    SigningRequest,
    SigningRequestId,
    UnknownSigningRequest,
    settle,
    with_outputs,
)
from signer.codesign.requests import (
    KindNotSupported,
    RequestSpec,
    check_against_profile,
    check_requester,
    find_profile,
)
from signer.errors import HsmError, KeyNotActive, SignerError, Unprocessable
from signer.service import SignerService
from signer.settings import ProfileSettings, Settings
from signer.store.base import StaleWrite

log = logging.getLogger("signer.codesign")

OPERATION = "signing"  # the approvals engine's operation name
RETRY_AFTER_S = 30  # a read retries a failed run at quorum this long after it, then as often


def _target(request_id: str) -> str:
    return f"signing-request/{request_id}"


class CodeSigning:
    """Signing requests over the store, the approvals engine and the HSM."""

    def __init__(
        self,
        settings: Settings,
        *,
        service: SignerService,
        approvals: Approvals,
        audit: AuditWriter,
        clock: Callable[[], float],
    ) -> None:
        self._profiles: Mapping[str, ProfileSettings] = {p.name: p for p in settings.profiles}
        self._groups = {g.name: g.members for g in settings.groups}
        self._service = service
        self._store = service.store
        self._approvals = approvals
        self._audit = audit
        self._clock = clock
        self._retry_at: dict[str, float] = {}  # approval id -> when a read may retry its run

    async def create(
        self, principal: Principal, spec: RequestSpec
    ) -> tuple[SigningRequest, ApprovalRequest]:
        """Check ``spec`` and its requester against the profile, open its approval, record it.

        Nothing is written before every check has passed. The request, the approval it is
        linked to and both audit records are written in one transaction: no reader ever finds
        one without the other.
        """
        profile = check_requester(principal, self._profiles, spec.profile)
        alg = self._service.view(profile.ring).policy.alg
        policy = ApprovalPolicy(
            group=profile.approvers,
            members=frozenset(self._groups[profile.approvers]),
            required=profile.approvals_required,
        )
        try:
            spec = check_against_profile(spec, profile, alg)
            _check_quorum(policy, principal.name)
        except (Unprocessable, QuorumUnreachable) as refused:
            await self._audit.record(
                actor=principal.name,
                action="signing.request",
                target=f"profile/{profile.name}",
                outcome="denied",
                details={"code": refused.code, "detail": refused.detail, "kind": spec.kind.value},
            )
            raise
        request_id = SigningRequestId("sr_" + secrets.token_urlsafe(12))
        created_at = int(self._clock())
        approval, approval_created = self._approvals.prepare(
            operation=OPERATION,
            target=request_id,
            requester=principal.name,
            policy=policy,
            details={
                "profile": profile.name,
                "kind": spec.kind.value,
                "subjects": len(spec.subjects),
                "sha256": spec.subjects[0].sha256,
                "reason": spec.reason,
                "change_id": spec.change_id,
            },
        )
        record = SigningRequest(
            id=request_id,
            profile=profile.name,
            kind=spec.kind,
            subjects=spec.subjects,
            predicate_type=spec.predicate_type,
            predicate=spec.predicate,
            reason=spec.reason,
            change_id=spec.change_id,
            requester=principal.name,
            created_at=created_at,
            approval_id=approval.id,
        )
        entry = self._audit.make(
            actor=principal.name,
            action="signing.request",
            target=_target(record.id),
            details={
                "profile": profile.name,
                "kind": record.kind.value,
                "subjects": [{"name": s.name, "sha256": s.sha256} for s in record.subjects],
                "predicate_type": record.predicate_type,
                "reason": record.reason,
                "change_id": record.change_id,
                "approval": approval.id,
            },
        )
        # One transaction: a failure leaves neither, so no approval ever waits for votes on a
        # request that was never recorded.
        await self._store.insert_signing_request(
            record, approval=approval, audit=[approval_created, entry]
        )
        self._audit.notify()
        return record, approval

    async def get(self, request_id: str) -> tuple[SigningRequest, ApprovalRequest | None]:
        """A request, closed first if its approval was denied or has expired."""
        record = await self._store.get_signing_request(request_id)
        if record is None:
            raise UnknownSigningRequest(f"no signing request {request_id!r}")
        return await self._current(record)

    async def list(
        self, *, state: str | None = None
    ) -> list[tuple[SigningRequest, ApprovalRequest | None]]:
        """Requests (in ``state``), oldest first, each with its approval."""
        found = [await self._current(r) for r in await self._store.signing_requests()]
        return [pair for pair in found if state is None or pair[0].state.value == state]

    async def check_voter(self, request_id: str, principal: Principal) -> None:
        """Refuse ``principal`` as a voter on the request as ``vote`` would (404, 403), before
        a vote's body is read: the HTTP contract checks permissions before bodies."""
        approval = await self._approval_to_vote_on(request_id, principal)
        self._approvals.check_voter(approval, principal.name)

    async def _approval_to_vote_on(self, request_id: str, principal: Principal) -> ApprovalRequest:
        """The request's approval: 404 for a request ``principal`` may not see, 403 without
        ``sign:approve:<profile>``."""
        record, approval = await self.get(request_id)
        if not visible(principal, record, approval):
            raise UnknownSigningRequest(f"no signing request {request_id!r}")
        require(principal, f"sign:approve:{record.profile}")
        if approval is None:
            raise UnknownApproval(f"signing request {record.id} has no approval")
        return approval

    async def vote(
        self, request_id: str, principal: Principal, decision: Decision, comment: str
    ) -> tuple[SigningRequest, ApprovalRequest | None]:
        """Approve or deny through the approvals engine; at quorum the outputs are signed.

        A request the principal may not see is answered as a missing one (404), never 403.
        """
        approval = await self._approval_to_vote_on(request_id, principal)
        await self._approvals.vote(
            approval.id, approver=principal.name, decision=decision, comment=comment
        )
        return await self.get(request_id)

    async def _approval_of(self, record: SigningRequest) -> ApprovalRequest | None:
        try:
            return await self._approvals.get(record.approval_id)
        except UnknownApproval:
            pass
        # ``create`` opens the approval before it inserts the request linked to it, so this
        # means a store that lost the approval. Nothing can approve the request any more; it
        # is left as it is for an operator rather than closed on a guess.
        log.error("signing request %s: approval %r is missing", record.id, record.approval_id)
        return None

    async def _current(
        self, record: SigningRequest
    ) -> tuple[SigningRequest, ApprovalRequest | None]:
        approval = await self._approval_of(record)
        if approval is None:
            return record, None
        if approval.state is ApprovalState.APPROVED and self._retry_due(approval):
            record, approval = await self._retry(record, approval)
        closed = settle(record, approval.state)
        if closed is None:
            return record, approval
        try:
            await self._store.update_signing_request(closed, expected_version=record.version)
        except StaleWrite:
            fresh = await self._store.get_signing_request(record.id)
            return (fresh if fresh is not None else record), approval
        return closed, approval

    def _retry_due(self, approval: ApprovalRequest) -> bool:
        # Leave the run at quorum RETRY_AFTER_S to finish (a second run now would sign on the
        # HSM again only to lose the compare-and-set), and retry no more often than that, so
        # a client polling through an HSM outage does not flood the audit log with failures.
        decided = approval.decided_at if approval.decided_at is not None else 0
        due = max(decided + RETRY_AFTER_S, self._retry_at.get(approval.id, 0.0))
        return self._clock() >= due

    async def _retry(
        self, record: SigningRequest, approval: ApprovalRequest
    ) -> tuple[SigningRequest, ApprovalRequest]:
        """Run again the signing of an approval whose run at quorum failed (idempotent)."""
        self._retry_at[approval.id] = self._clock() + RETRY_AFTER_S  # before any await
        try:
            approval = await self._approvals.execute(approval)
        except SignerError as exc:
            log.warning("signing %s again failed: %s", record.id, exc.code)
            return record, approval  # still pending; read again later
        del self._retry_at[approval.id]
        fresh = await self._store.get_signing_request(record.id)
        return (fresh if fresh is not None else record), approval

    async def run(self, approval: ApprovalRequest) -> dict[str, Any]:
        """The ``signing`` operation: sign every output once and store them (idempotent)."""
        record = await self._store.get_signing_request(approval.target)
        if record is None:
            raise UnknownSigningRequest(f"no signing request {approval.target!r}")
        if record.state is RequestState.SIGNED:
            return _outcome(record)  # a resumed run: signed before the crash
        profile = find_profile(self._profiles, record.profile)
        if record.kind.value not in profile.kinds:
            # Approved before the profile's kinds were narrowed: the config now says no.
            raise KindNotSupported(
                f"profile {profile.name!r} no longer signs {record.kind.value!r} requests "
                f"(its kinds: {list(profile.kinds)})",
                field="kind",
            )
        key = self._service.view(profile.ring).signing
        if key is None:
            raise KeyNotActive(f"ring {profile.ring!r} has no active key to sign with")
        if key.record.alg not in (Alg.ES256, Alg.ES384):
            raise HsmError(f"ring {profile.ring!r} signs with {key.record.alg}, not ECDSA")
        predicate = out.approval_predicate(record, approval)
        signatures: dict[str, bytes] = {}
        entries = []
        for item in out.plan(record, predicate):
            if item.prehashed:
                raw = await self._service.backend.sign_digest(key.ref, item.data)
            else:
                raw = await self._service.backend.sign(key.ref, item.data)
            signatures[item.output] = raw_to_der_ecdsa(raw)
            entries.append(
                self._audit.make(
                    actor="system",
                    action="signing.sign",
                    target=_target(record.id),
                    details={
                        "request": record.id,
                        "approval": approval.id,
                        "profile": record.profile,
                        "kind": record.kind.value,
                        "output": item.output,
                        "ring": profile.ring,
                        "kid": key.record.kid,
                        "alg": key.record.alg.value,
                        "sha256": list(item.digests),
                        "requester": record.requester,
                        "approvers": [a.approver for a in predicate.approvals],
                    },
                )
            )
        outputs = out.assemble(record, predicate, hint=key.record.kid, signatures=signatures)
        signed = with_outputs(
            record, outputs, ring=profile.ring, kid=key.record.kid, now=int(self._clock())
        )
        try:
            # Stored only while the key is still active: outputs signed by a key revoked
            # meanwhile (by any process) are never handed out; the run fails and is retried.
            await self._store.update_signing_request(
                signed,
                expected_version=record.version,
                audit=entries,
                require_active=[key.record.kid],
            )
        except StaleWrite:
            fresh = await self._store.get_signing_request(record.id)
            if fresh is not None and fresh.state is RequestState.SIGNED:
                return _outcome(fresh)  # another run stored its outputs first; ours are dropped
            raise
        self._audit.notify()
        log.info("signed %s (%s) with %s", record.id, record.kind, key.record.kid)
        return _outcome(signed)


def visible(principal: Principal, record: SigningRequest, approval: ApprovalRequest | None) -> bool:
    """Whether ``principal`` may see ``record``: its requester, one who may request or approve
    on its profile, a member of its approver group, or an auditor."""
    return (
        principal.name == record.requester
        or principal.allows(f"sign:request:{record.profile}")
        or principal.allows(f"sign:approve:{record.profile}")
        or principal.allows("audit:read")
        or (approval is not None and principal.name in approval.policy.members)
    )


def _check_quorum(policy: ApprovalPolicy, requester: str) -> None:
    """409 unless the approvers besides ``requester`` can reach quorum (separation of duties).

    Settings refuse such a profile at start-up; this keeps ``create`` from writing anything if
    one slipped through.
    """
    eligible = policy.members - {requester}
    if len(eligible) < policy.required:
        raise QuorumUnreachable(
            f"profile needs {policy.required} approvals from {policy.group!r}, which has only "
            f"{len(eligible)} members besides the requester {requester!r}"
        )


def _outcome(record: SigningRequest) -> dict[str, Any]:
    """What ``approval.execute`` records about the run."""
    return {
        "request": record.id,
        "kid": record.kid,
        "outputs": sorted(record.outputs),
        "sha256": record.digests,
    }
