"""The code-signing shell: persists signing requests, opens their approvals, signs at quorum.

A request is written before its approval exists (so the approval's operation always finds it),
then linked to the approval. The approvals engine runs the ``signing`` operation exactly once,
for the vote that reached quorum (a compare-and-set on the approval); :meth:`CodeSigning.run`
signs every output with the profile ring's active key on the HSM and stores the outputs together
with one ``signing.sign`` audit record per signature, in one transaction, so no signature exists
in the store without its audit record. A resumed run (after a crash) finds the outputs already
stored and returns them without signing again.

A request whose approval was denied or expired is closed (``denied``/``expired``) the first
time it is read and never gets outputs: ``with_outputs`` refuses anything but ``pending``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from jwks.algorithms import Alg
from jwks.jws import raw_to_der_ecdsa
from signer.approvals.rules import (
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
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
    RequestSpec,
    check_against_profile,
    check_requester,
    find_profile,
)
from signer.errors import HsmError, KeyNotActive, Unprocessable
from signer.service import SignerService
from signer.settings import ProfileSettings, Settings
from signer.store.base import StaleWrite

log = logging.getLogger("signer.codesign")

OPERATION = "signing"  # the approvals engine's operation name


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

    def profile(self, name: str) -> ProfileSettings:
        """The profile ``name`` (422 ``unknown_profile`` if absent)."""
        return find_profile(self._profiles, name)

    async def create(
        self, principal: Principal, spec: RequestSpec
    ) -> tuple[SigningRequest, ApprovalRequest]:
        """Check ``spec`` against its profile, record it and open its approval."""
        profile = self.profile(spec.profile)
        check_requester(principal, profile)
        alg = self._service.view(profile.ring).policy.alg
        try:
            spec = check_against_profile(spec, profile, alg)
        except Unprocessable as refused:
            await self._audit.record(
                actor=principal.name,
                action="signing.request",
                target=f"profile/{profile.name}",
                outcome="denied",
                details={"code": refused.code, "detail": refused.detail, "kind": spec.kind.value},
            )
            raise
        record = SigningRequest(
            id=SigningRequestId("sr_" + secrets.token_urlsafe(12)),
            profile=profile.name,
            kind=spec.kind,
            subjects=spec.subjects,
            predicate_type=spec.predicate_type,
            predicate=spec.predicate,
            reason=spec.reason,
            change_id=spec.change_id,
            requester=principal.name,
            created_at=int(self._clock()),
            approval_id="",  # linked below, once the approval exists
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
            },
        )
        await self._store.insert_signing_request(record, audit=[entry])
        approval = await self._approvals.create(
            operation=OPERATION,
            target=record.id,
            requester=principal.name,
            policy=ApprovalPolicy(
                group=profile.approvers,
                members=frozenset(self._groups[profile.approvers]),
                required=profile.approvals_required,
            ),
            details={
                "profile": profile.name,
                "kind": record.kind.value,
                "subjects": len(record.subjects),
                "sha256": record.subjects[0].sha256,
                "reason": record.reason,
                "change_id": record.change_id,
            },
        )
        linked = replace(record, approval_id=approval.id, version=record.version + 1)
        await self._store.update_signing_request(linked, expected_version=record.version)
        self._audit.notify()
        return linked, approval

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

    async def vote(
        self, request_id: str, principal: Principal, decision: Decision, comment: str
    ) -> tuple[SigningRequest, ApprovalRequest | None]:
        """Approve or deny through the approvals engine; at quorum the outputs are signed."""
        record, approval = await self.get(request_id)
        require(principal, f"sign:approve:{record.profile}")
        if approval is None:
            raise UnknownApproval(f"signing request {record.id} has no approval")
        await self._approvals.vote(
            approval.id, approver=principal.name, decision=decision, comment=comment
        )
        return await self.get(request_id)

    async def _approval_of(self, record: SigningRequest) -> ApprovalRequest | None:
        if record.approval_id:
            return await self._approvals.get(record.approval_id)
        # A crash between the two writes of ``create``: find the approval by its target.
        for approval in await self._approvals.list():
            if approval.operation == OPERATION and approval.target == record.id:
                return approval
        return None

    async def _current(
        self, record: SigningRequest
    ) -> tuple[SigningRequest, ApprovalRequest | None]:
        approval = await self._approval_of(record)
        # No approval at all: ``create`` crashed before opening it, so no quorum can ever come.
        closed = settle(record, RequestState.EXPIRED if approval is None else approval.state)
        if closed is None:
            return record, approval
        try:
            await self._store.update_signing_request(closed, expected_version=record.version)
        except StaleWrite:
            fresh = await self._store.get_signing_request(record.id)
            return (fresh if fresh is not None else record), approval
        return closed, approval

    async def run(self, approval: ApprovalRequest) -> dict[str, Any]:
        """The ``signing`` operation: sign every output once and store them (idempotent)."""
        record = await self._store.get_signing_request(approval.target)
        if record is None:
            raise UnknownSigningRequest(f"no signing request {approval.target!r}")
        if record.state is RequestState.SIGNED:
            return _outcome(record)  # a resumed run: signed before the crash
        profile = self.profile(record.profile)
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
            await self._store.update_signing_request(
                signed, expected_version=record.version, audit=entries
            )
        except StaleWrite:
            fresh = await self._store.get_signing_request(record.id)
            if fresh is not None and fresh.state is RequestState.SIGNED:
                return _outcome(fresh)  # another run stored its outputs first; ours are dropped
            raise
        self._audit.notify()
        log.info("signed %s (%s) with %s", record.id, record.kind, key.record.kid)
        return _outcome(signed)


def _outcome(record: SigningRequest) -> dict[str, Any]:
    """What ``approval.execute`` records about the run."""
    return {
        "request": record.id,
        "kid": record.kid,
        "outputs": sorted(record.outputs),
        "sha256": record.digests,
    }
