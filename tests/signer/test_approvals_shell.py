"""The approvals shell on a real SQLite store: votes, expiry and execute-once under races."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from signer.approvals.rules import (
    AlreadyDecided,
    ApprovalExpired,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalState,
    Decision,
    NotAnApprover,
    SelfApproval,
)
from signer.approvals.shell import Approvals, OperationFailed
from signer.audit.writer import AuditWriter
from signer.errors import HsmUnavailable, SignerError
from signer.store.sqlite import SqliteStore
from tests.fakes import MovingClock

T0 = 1_800_000_000.0
POLICY = ApprovalPolicy(group="custodians", members=frozenset({"ann", "bob", "cat"}), required=2)


@dataclass
class Node:
    """One connection's worth of store, audit writer and approvals shell."""

    store: SqliteStore
    audit: AuditWriter
    approvals: Approvals
    runs: list[str] = field(default_factory=list)


async def node(path: Path, clock: MovingClock, runs: list[str]) -> Node:
    store = SqliteStore(path)
    audit = AuditWriter(store, clock=clock)
    await audit.start()
    approvals = Approvals(store, audit, clock=clock, ttl=3600)

    async def operation(request: ApprovalRequest) -> Mapping[str, Any]:
        await asyncio.sleep(0.01)  # widen the window a second executor would need
        runs.append(request.id)
        return {"ran": True}

    approvals.register("test.op", operation)
    return Node(store, audit, approvals, runs)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, MovingClock]]:
    clock = MovingClock(T0)
    runs: list[str] = []
    first = await node(tmp_path / "state.db", clock, runs)
    second = await node(tmp_path / "state.db", clock, runs)
    yield first, second, clock
    for each in (first, second):
        await each.audit.aclose()
        await each.store.aclose()


async def open_request(n: Node, requester: str = "admin") -> ApprovalRequest:
    return await n.approvals.create(
        operation="test.op", target="thing", requester=requester, policy=POLICY, details={}
    )


async def test_quorum_runs_the_operation_once(nodes: tuple[Node, Node, MovingClock]) -> None:
    a, _, _ = nodes
    request = await open_request(a)
    first = await a.approvals.vote(
        request.id, approver="ann", decision=Decision.APPROVE, comment=""
    )
    assert (first.state, first.approvals) == (ApprovalState.PENDING, 1)
    done = await a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="")
    assert done.state is ApprovalState.EXECUTED
    assert a.runs == [request.id]


async def test_requester_may_not_approve_their_own_request(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    a, _, _ = nodes
    request = await open_request(a, requester="ann")
    with pytest.raises(SelfApproval):
        await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
    with pytest.raises(NotAnApprover):
        await a.approvals.vote(request.id, approver="eve", decision=Decision.APPROVE, comment="")


async def test_duplicate_votes_count_once(nodes: tuple[Node, Node, MovingClock]) -> None:
    a, _, _ = nodes
    request = await open_request(a)
    for _ in range(3):
        again = await a.approvals.vote(
            request.id, approver="ann", decision=Decision.APPROVE, comment=""
        )
    assert (again.state, again.approvals) == (ApprovalState.PENDING, 1)
    assert a.runs == []


async def test_deny_wins(nodes: tuple[Node, Node, MovingClock]) -> None:
    a, _, _ = nodes
    request = await open_request(a)
    await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
    denied = await a.approvals.vote(
        request.id, approver="bob", decision=Decision.DENY, comment="not this one"
    )
    assert denied.state is ApprovalState.DENIED
    with pytest.raises(AlreadyDecided):
        await a.approvals.vote(request.id, approver="cat", decision=Decision.APPROVE, comment="")
    assert a.runs == []


async def test_expired_requests_refuse_votes_and_never_run(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    a, _, clock = nodes
    request = await open_request(a)
    await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
    clock.now += 3600
    with pytest.raises(ApprovalExpired):
        await a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="")
    assert (await a.approvals.get(request.id)).state is ApprovalState.EXPIRED
    assert a.runs == []


async def test_racing_final_approvals_on_two_connections_execute_once(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    a, b, _ = nodes
    for _ in range(10):
        request = await open_request(a)
        await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
        results = await asyncio.gather(
            a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment=""),
            b.approvals.vote(request.id, approver="cat", decision=Decision.APPROVE, comment=""),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, ApprovalRequest)]
        lost = [r for r in results if isinstance(r, Exception)]
        assert len(won) >= 1
        assert all(isinstance(e, AlreadyDecided) for e in lost)
        assert a.runs.count(request.id) == 1
        assert (await a.approvals.get(request.id)).state is ApprovalState.EXECUTED


async def test_every_step_is_audited(nodes: tuple[Node, Node, MovingClock]) -> None:
    a, _, _ = nodes
    request = await open_request(a)
    await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="ok")
    with pytest.raises(NotAnApprover):
        await a.approvals.vote(request.id, approver="eve", decision=Decision.APPROVE, comment="")
    await a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="ok")
    actions = [
        (r.actor, r.action, r.outcome)
        for r in await a.store.audit_records()
        if r.target == f"approval/{request.id}"
    ]
    assert actions == [
        ("admin", "approval.create", "success"),
        ("ann", "approval.vote", "success"),
        ("eve", "approval.vote", "denied"),
        ("bob", "approval.vote", "success"),
        ("system", "approval.execute", "success"),
    ]


async def test_resume_runs_an_approved_request_a_crash_left_behind(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    a, b, _ = nodes
    request = await open_request(a)

    async def crash(_: ApprovalRequest) -> Mapping[str, Any]:
        raise asyncio.CancelledError  # the process died mid-operation

    a.approvals.register("test.op", crash)
    await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
    with pytest.raises(asyncio.CancelledError):
        await a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="")
    assert (await b.approvals.get(request.id)).state is ApprovalState.APPROVED
    await b.approvals.resume()
    assert b.runs == [request.id]
    assert (await b.approvals.get(request.id)).state is ApprovalState.EXECUTED


async def test_an_operation_raising_a_foreign_error_fails_as_a_signer_error(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    """A bug in an operation is audited as a failure and reaches the caller as a SignerError."""
    a, _, _ = nodes
    request = await open_request(a)

    async def broken(_: ApprovalRequest) -> Mapping[str, Any]:
        raise ValueError("a bug, not a refusal")

    a.approvals.register("test.op", broken)
    await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
    with pytest.raises(OperationFailed) as raised:
        await a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="")
    assert isinstance(raised.value, SignerError)
    assert "a bug" not in raised.value.detail  # no internals reach the client
    assert (await a.approvals.get(request.id)).state is ApprovalState.APPROVED
    failure = [r for r in await a.store.audit_records() if r.action == "approval.execute"]
    assert [(r.outcome, r.details["code"], r.details["error"]) for r in failure] == [
        ("failure", "operation_failed", "ValueError")
    ]


async def test_resume_goes_on_past_a_request_whose_operation_keeps_failing(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    """One bad approved request never blocks start-up: the others still run."""
    a, b, _ = nodes
    bad, good = await open_request(a), await open_request(a)

    async def crash(_: ApprovalRequest) -> Mapping[str, Any]:
        raise asyncio.CancelledError  # the process died mid-operation

    a.approvals.register("test.op", crash)
    for request in (bad, good):
        await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
        with pytest.raises(asyncio.CancelledError):
            await a.approvals.vote(
                request.id, approver="bob", decision=Decision.APPROVE, comment=""
            )

    async def fails_for_bad(request: ApprovalRequest) -> Mapping[str, Any]:
        if request.id == bad.id:
            raise RuntimeError("broken record")
        b.runs.append(request.id)
        return {"ran": True}

    b.approvals.register("test.op", fails_for_bad)
    await b.approvals.resume()
    assert b.runs == [good.id]
    assert (await b.approvals.get(bad.id)).state is ApprovalState.APPROVED
    assert (await b.approvals.get(good.id)).state is ApprovalState.EXECUTED


async def test_a_run_that_failed_at_quorum_is_retried_by_the_leader_until_it_succeeds(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    """An outage at quorum leaves the request approved; the retry loop runs it once the
    outage is over, and only while this process leads."""
    a, _, _ = nodes
    request = await open_request(a)
    outage, leading, attempts = True, False, 0
    retried = asyncio.Event()

    async def flaky(approved: ApprovalRequest) -> Mapping[str, Any]:
        nonlocal attempts
        attempts += 1
        if attempts >= 3:
            retried.set()
        if outage:
            raise HsmUnavailable("the token is busy")
        a.runs.append(approved.id)
        return {"ran": True}

    a.approvals.register("test.op", flaky)
    await a.approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
    with pytest.raises(HsmUnavailable):
        await a.approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="")
    retrying = asyncio.create_task(a.approvals.retry_forever(every=0.01, when=lambda: leading))
    try:
        leading = True
        await asyncio.wait_for(retried.wait(), 10)  # retries, all during the outage
        leading = False
        seen = -1
        while seen != attempts:  # a round under way when leadership went ends (and fails)
            seen = attempts
            await asyncio.sleep(0.2)
        assert (await a.approvals.get(request.id)).state is ApprovalState.APPROVED
        outage = False
        await asyncio.sleep(0.1)  # the outage is over, but not the leader: not retried
        assert attempts == seen
        assert (await a.approvals.get(request.id)).state is ApprovalState.APPROVED
        leading = True
        for _ in range(100):
            if (await a.approvals.get(request.id)).state is ApprovalState.EXECUTED:
                break
            await asyncio.sleep(0.02)
        assert (await a.approvals.get(request.id)).state is ApprovalState.EXECUTED
        assert a.runs == [request.id]
    finally:
        retrying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retrying
    executions = [r for r in await a.store.audit_records() if r.action == "approval.execute"]
    assert len(executions) >= 3  # the one at quorum and at least two retries, each audited
    assert [r.outcome for r in executions][-1] == "success"


async def test_a_member_taken_out_of_the_group_no_longer_votes_on_pending_requests(
    tmp_path: Path,
) -> None:
    """The request keeps the members its group had when opened; one removed from the group
    since (the signer restarted with the new settings) is refused, and the refusal audited."""
    clock = MovingClock(T0)
    current = {"custodians": frozenset({"ann", "bob", "cat"})}
    store = SqliteStore(tmp_path / "state.db")
    audit = AuditWriter(store, clock=clock)
    await audit.start()
    approvals = Approvals(store, audit, clock=clock, members=lambda group: current[group])
    runs: list[str] = []

    async def operation(request: ApprovalRequest) -> Mapping[str, Any]:
        runs.append(request.id)
        return {"ran": True}

    approvals.register("test.op", operation)
    try:
        request = await approvals.create(
            operation="test.op", target="thing", requester="admin", policy=POLICY, details={}
        )
        assert "bob" in request.policy.members
        current["custodians"] = frozenset({"ann", "cat"})
        with pytest.raises(NotAnApprover, match="no longer in 'custodians'"):
            await approvals.vote(request.id, approver="bob", decision=Decision.APPROVE, comment="")
        await approvals.vote(request.id, approver="ann", decision=Decision.APPROVE, comment="")
        assert (await approvals.get(request.id)).state is ApprovalState.PENDING
        done = await approvals.vote(
            request.id, approver="cat", decision=Decision.APPROVE, comment=""
        )
        assert done.state is ApprovalState.EXECUTED
        assert runs == [request.id]
        votes = [r for r in await store.audit_records() if r.action == "approval.vote"]
        assert [(r.actor, r.outcome) for r in votes] == [
            ("bob", "denied"),
            ("ann", "success"),
            ("cat", "success"),
        ]
    finally:
        await audit.aclose()
        await store.aclose()
