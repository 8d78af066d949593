"""The approvals shell: persists what ``signer.approvals.rules`` decides, and runs approved
operations exactly once.

Every vote is a compare-and-set on the request's ``version``, written in one transaction with its
audit record. Of two final approvals racing on two connections only one write wins; only the
winner saw ``reached_quorum`` and runs the operation, then marks the request ``executed`` (again a
compare-and-set). A crash between the two leaves the request ``approved``; ``resume`` runs it at
the next start, and a run that failed (an outage at quorum) is run again every minute by
``retry_forever``. Operations are idempotent against their own effect (a destroyed key cannot be
destroyed twice), so a resumed run is safe.

A run that fails is audited (``approval.execute``, outcome ``failure``) and leaves the request
``approved``; an operation raising anything but a ``SignerError`` (a bug) is logged with its
traceback and reported as ``OperationFailed`` (500). ``resume`` logs a failure and goes on, so
one bad request never keeps the signer from starting.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from signer.approvals import rules
from signer.approvals.rules import (
    ApprovalId,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalState,
    Decision,
    NotAnApprover,
    UnknownApproval,
    Vote,
)
from signer.audit.chain import AuditEntry
from signer.audit.writer import AuditWriter
from signer.errors import Conflict, SignerError
from signer.store.base import StaleWrite, StateStore

log = logging.getLogger("signer.approvals")

DEFAULT_TTL = 24 * 3600
CAS_ATTEMPTS = 5
RETRY_SECONDS = 60.0  # how often an approved request whose run failed is run again

Operation = Callable[[ApprovalRequest], Awaitable[Mapping[str, Any]]]


class OperationFailed(SignerError):
    """An approved operation raised something other than a ``SignerError`` (a bug; logged)."""

    code = "operation_failed"
    title = "Approved operation failed"


class Approvals:
    """Create, vote on and execute approval requests."""

    def __init__(
        self,
        store: StateStore,
        audit: AuditWriter,
        *,
        clock: Callable[[], float],
        ttl: int = DEFAULT_TTL,
        members: Callable[[str], frozenset[str]] | None = None,
    ) -> None:
        """``members``: a group's members now (from the settings). A request keeps the members
        its group had when it was opened, and a voter must be in both: one taken out of the
        group since (and the signer restarted with that) no longer votes on what is pending."""
        self._store = store
        self._audit = audit
        self._clock = clock
        self._ttl = ttl
        self._members = members
        self._operations: dict[str, Operation] = {}

    def register(self, operation: str, run: Operation) -> None:
        """Name the function that carries out ``operation`` once it is approved."""
        self._operations[operation] = run

    def _now(self) -> int:
        return int(self._clock())

    async def create(
        self,
        *,
        operation: str,
        target: str,
        requester: str,
        policy: ApprovalPolicy,
        details: Mapping[str, str | int | bool | None],
    ) -> ApprovalRequest:
        """Open a pending request (audited with it)."""
        request, created = self.prepare(
            operation=operation, target=target, requester=requester, policy=policy, details=details
        )
        await self._store.insert_approval(request, audit=[created])
        self._audit.notify()
        return request

    def prepare(
        self,
        *,
        operation: str,
        target: str,
        requester: str,
        policy: ApprovalPolicy,
        details: Mapping[str, str | int | bool | None],
    ) -> tuple[ApprovalRequest, AuditEntry]:
        """A new pending request and its audit entry, written by the caller together with what
        the request is for (``create`` writes it alone)."""
        if operation not in self._operations:
            raise Conflict(f"no operation {operation!r} can be approved")
        request = rules.new_request(
            id=ApprovalId("apr_" + secrets.token_urlsafe(12)),
            operation=operation,
            target=target,
            requester=requester,
            policy=policy,
            now=self._now(),
            ttl=self._ttl,
            details=details,
        )
        created = self._audit.make(
            actor=requester,
            action="approval.create",
            target=f"approval/{request.id}",
            details={
                "operation": operation,
                "target": target,
                "group": policy.group,
                "required": policy.required,
                **{f"param.{k}": v for k, v in details.items()},
            },
        )
        return request, created

    async def get(self, approval_id: str) -> ApprovalRequest:
        """One request, expired first if its time is up."""
        request = await self._store.get_approval(approval_id)
        if request is None:
            raise UnknownApproval(f"no approval {approval_id!r}")
        return await self._expire_if_due(request)

    async def list(self, *, state: str | None = None) -> list[ApprovalRequest]:
        """Requests (in ``state``), with due expiries applied first."""
        current = [await self._expire_if_due(r) for r in await self._store.approvals()]
        return [r for r in current if state is None or r.state.value == state]

    async def _expire_if_due(self, request: ApprovalRequest) -> ApprovalRequest:
        expired = rules.expire(request, self._now())
        if expired is None:
            return request
        entry = self._audit.make(
            actor="system",
            action="approval.expire",
            target=f"approval/{request.id}",
            outcome="failure",
            details={"operation": request.operation, "target": request.target},
        )
        try:
            await self._store.update_approval(
                expired, expected_version=request.version, audit=[entry]
            )
        except StaleWrite:
            fresh = await self._store.get_approval(request.id)
            return fresh if fresh is not None else request
        self._audit.notify()
        return expired

    async def vote(
        self, approval_id: str, *, approver: str, decision: Decision, comment: str
    ) -> ApprovalRequest:
        """Record ``approver``'s vote; run the operation if this vote reaches quorum."""
        for _ in range(CAS_ATTEMPTS):
            request = await self.get(approval_id)
            cast = Vote(approver=approver, decision=decision, comment=comment, at=self._now())
            try:
                self.check_voter(request, approver)
                result = rules.vote(request, cast, self._now())
            except SignerError as refused:
                await self._audit.record(
                    actor=approver,
                    action="approval.vote",
                    target=f"approval/{request.id}",
                    outcome="denied",
                    details={"decision": decision.value, "code": refused.code},
                )
                raise
            if not result.changed:
                return request
            voted = self._audit.make(
                actor=approver,
                action="approval.vote",
                target=f"approval/{request.id}",
                details={
                    "decision": decision.value,
                    "comment": comment,
                    "approvals": result.request.approvals,
                    "required": request.policy.required,
                    "state": result.request.state.value,
                },
            )
            try:
                await self._store.update_approval(
                    result.request, expected_version=request.version, audit=[voted]
                )
            except StaleWrite:
                continue  # another vote landed first: read it and decide again
            self._audit.notify()
            if result.reached_quorum:
                return await self.execute(result.request)
            return result.request
        raise Conflict(f"approval {approval_id} is changing too fast; try again")

    def check_voter(self, request: ApprovalRequest, approver: str) -> None:
        """``SelfApproval`` or ``NotAnApprover`` unless ``approver`` may vote on ``request``:
        a member of its group when it was opened and, with ``members``, still one now."""
        rules.check_voter(request, approver)
        if self._members is not None and approver not in self._members(request.policy.group):
            raise NotAnApprover(
                f"{approver!r} is no longer in {request.policy.group!r}, which approves "
                f"{request.operation}"
            )

    async def execute(self, request: ApprovalRequest) -> ApprovalRequest:
        """Run the operation of an ``approved`` request and mark it executed.

        Also for a request whose run at quorum failed (an HSM outage, a lost compare-and-set):
        operations are idempotent, so a second run is safe. Raises ``SignerError`` only.
        """
        run = self._operations[request.operation]
        try:
            outcome = await run(request)
        except SignerError as exc:
            log.warning("approved %s on %s failed: %s", request.operation, request.target, exc)
            await self._audit_failure(request, {"code": exc.code})
            raise
        except Exception as exc:
            # A bug or an unexpected library error: the traceback goes to the log, the caller
            # gets a SignerError (a 500 without internals), and the failure is audited like any
            # other, so nothing above has to know about foreign exceptions (STYLE 10, 11).
            log.exception("approved %s on %s raised", request.operation, request.target)
            await self._audit_failure(
                request, {"code": OperationFailed.code, "error": type(exc).__name__}
            )
            raise OperationFailed(
                f"approved {request.operation} on {request.target} failed with an internal "
                f"error; approval {request.id} stays approved and is retried"
            ) from exc
        executed = rules.mark_executed(request, self._now())
        entry = self._audit.make(
            actor="system",
            action="approval.execute",
            target=f"approval/{request.id}",
            details={"operation": request.operation, "target": request.target, **outcome},
        )
        try:
            await self._store.update_approval(
                executed, expected_version=request.version, audit=[entry]
            )
        except StaleWrite:
            # Another run (a resumed one, a retry on read) marked it first; ours was idempotent.
            fresh = await self._store.get_approval(request.id)
            if fresh is not None and fresh.state is ApprovalState.EXECUTED:
                return fresh
            raise
        self._audit.notify()
        return executed

    async def _audit_failure(self, request: ApprovalRequest, details: Mapping[str, str]) -> None:
        await self._audit.record(
            actor="system",
            action="approval.execute",
            target=f"approval/{request.id}",
            outcome="failure",
            details={"operation": request.operation, **details},
        )

    async def retry_forever(
        self, *, every: float = RETRY_SECONDS, when: Callable[[], bool] = lambda: True
    ) -> None:
        """Every ``every`` seconds, run again each approved request whose run failed (an HSM
        or store outage at quorum), while ``when()`` holds: the lifecycle leader's, so that
        workers do not all retry. Each failed try is audited, as at quorum. Cancel to stop."""
        while True:
            await asyncio.sleep(every)
            if not when():
                continue
            try:
                await self.resume()
            except SignerError as exc:  # the store could not list them: next round
                log.warning("retrying approved requests failed: %s", exc.code)

    async def resume(self) -> None:
        """Run operations whose approval reached quorum but whose run a crash interrupted (or
        failed).

        One failing request never blocks start-up: every error is logged and the next is tried.
        """
        for request in await self._store.approvals(state=ApprovalState.APPROVED.value):
            try:
                await self.execute(request)
            except SignerError as exc:
                log.warning("resuming approval %s failed: %s", request.id, exc.code)
            except Exception:
                log.exception("resuming approval %s failed", request.id)
