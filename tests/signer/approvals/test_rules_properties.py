"""Property-based tests of the approval rules: random schedules never break an invariant.

Random policies (1 to 6 members, 1..M required, the requester sometimes a member) meet random
sequences of votes by members, the requester and an outsider, expiry sweeps, execution attempts
and clock jumps, applied the way the shell applies them: refused moves raise, and each refusal
must be the one the rules call for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer.approvals import rules
from signer.approvals.rules import (
    ApprovalId,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalState,
    Decision,
    Vote,
)

T0 = 1_700_000_000
OUTSIDER = "mallory"
PENDING, APPROVED, EXECUTED = ApprovalState.PENDING, ApprovalState.APPROVED, ApprovalState.EXECUTED
DENIED, EXPIRED = ApprovalState.DENIED, ApprovalState.EXPIRED

# Every edge a request may take; anything else is a bug.
ALLOWED = {(PENDING, APPROVED), (APPROVED, EXECUTED), (PENDING, DENIED), (PENDING, EXPIRED)}
COMMENTS = ["", " ", "ok", "not this key", "x" * rules.MAX_COMMENT, "x" * (rules.MAX_COMMENT + 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One move of the schedule, ``advance`` seconds after the previous one."""

    kind: str  # "vote", "expire" or "execute"
    voter: str
    decision: Decision
    comment: str
    advance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A fresh request and the schedule to run against it."""

    request: ApprovalRequest
    steps: tuple[Step, ...]


details_values = st.none() | st.booleans() | st.integers() | st.text(max_size=12)


@st.composite
def policies(draw: st.DrawFn) -> tuple[ApprovalPolicy, str]:
    """A policy and a requester who may be one of its members, with quorum reachable."""
    members = [f"m{i}" for i in range(draw(st.integers(1, 6)))]
    requester_is_member = len(members) >= 2 and draw(st.booleans())
    requester = members[0] if requester_is_member else "requester"
    required = draw(st.integers(1, len(members) - requester_is_member))
    return ApprovalPolicy(group="g", members=frozenset(members), required=required), requester


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    policy, requester = draw(policies())
    ttl = draw(st.integers(1, 5000))
    request = rules.new_request(
        id=ApprovalId("apr_p"),
        operation=draw(st.sampled_from(["key.destroy", "key.reinstate", "signing"])),
        target="kid-1",
        requester=requester,
        policy=policy,
        now=T0,
        ttl=ttl,
        details=draw(st.dictionaries(st.text(max_size=8), details_values, max_size=3)),
    )
    voters = sorted(policy.members | {requester, OUTSIDER})
    step = st.builds(
        Step,
        kind=st.sampled_from(["vote", "vote", "vote", "vote", "expire", "execute"]),
        voter=st.sampled_from(voters),
        decision=st.sampled_from([Decision.APPROVE] * 4 + [Decision.DENY]),
        comment=st.sampled_from(COMMENTS),
        advance=st.integers(0, ttl // 4 + 1),
    )
    return Scenario(request=request, steps=tuple(draw(st.lists(step, max_size=30))))


def eligible_approvals(request: ApprovalRequest) -> set[str]:
    """Counted independently of the module: distinct approving members other than the requester."""
    return {
        v.approver
        for v in request.votes
        if v.decision is Decision.APPROVE
        and v.approver in request.policy.members
        and v.approver != request.requester
    }


def check_invariants(request: ApprovalRequest) -> None:
    voters = [v.approver for v in request.votes]
    assert request.requester not in voters
    assert set(voters) <= request.policy.members
    assert len(set(voters)) == len(voters)
    has_deny = any(v.decision is Decision.DENY for v in request.votes)
    if request.state in {APPROVED, EXECUTED}:
        assert len(eligible_approvals(request)) >= request.policy.required
        assert not has_deny
    assert (request.state is DENIED) == has_deny
    assert request.approvals == len(eligible_approvals(request))
    wire = json.loads(json.dumps(rules.to_json(request)))
    assert rules.from_json(wire) == request
    assert rules.to_json(rules.from_json(wire)) == wire


def check_step(before: ApprovalRequest, after: ApprovalRequest) -> None:
    """A change bumps the version by exactly one and takes an allowed edge."""
    assert after != before
    assert after.version == before.version + 1
    assert before.state == after.state or (before.state, after.state) in ALLOWED


def comment_ok(step: Step) -> bool:
    if len(step.comment) > rules.MAX_COMMENT:
        return False
    return step.decision is Decision.APPROVE or bool(step.comment.strip())


@dataclass(slots=True)
class Run:
    """The request as the shell would hold it, and what the schedule did to it."""

    request: ApprovalRequest
    now: int = T0
    quorum_votes: int = 0
    executions: int = 0

    def due_to_expire(self) -> bool:
        return self.request.state is PENDING and self.now >= self.request.expires_at

    def cast(self, step: Step) -> None:
        request = self.request
        vote = Vote(approver=step.voter, decision=step.decision, comment=step.comment, at=self.now)
        previous = {v.approver: v.decision for v in request.votes}.get(step.voter)
        try:
            result = rules.vote(request, vote, self.now)
        except rules.SelfApproval:
            assert step.voter == request.requester
        except rules.NotAnApprover:
            assert step.voter not in request.policy.members
            assert step.voter != request.requester
        except rules.InvalidComment:
            assert not comment_ok(step)
        except rules.ApprovalExpired:
            assert request.state is EXPIRED or self.due_to_expire()
        except rules.AlreadyDecided:
            assert request.state is not PENDING
            assert previous is not step.decision
        except rules.VoteChanged:
            assert request.state is PENDING
            assert previous not in {None, step.decision}
        else:
            assert step.voter != request.requester
            assert step.voter in request.policy.members
            assert comment_ok(step)
            assert request.state is not EXPIRED
            assert not self.due_to_expire()
            if result.changed:
                check_step(request, result.request)
                assert previous is None
                assert result.request.votes == (*request.votes, vote)
            else:
                assert result.request is request
                assert previous is step.decision
            if result.reached_quorum:
                assert (request.state, result.request.state) == (PENDING, APPROVED)
            else:
                assert result.request.state is not APPROVED or request.state is APPROVED
            self.quorum_votes += result.reached_quorum
            self.request = result.request

    def sweep(self) -> None:
        expired = rules.expire(self.request, self.now)
        if expired is None:
            assert not self.due_to_expire()
            return
        check_step(self.request, expired)
        assert expired.state is EXPIRED
        self.request = expired

    def execute(self) -> None:
        before = self.request
        try:
            executed = rules.mark_executed(before, self.now)
        except rules.ApprovalPending:
            refused = PENDING
        except rules.AlreadyDecided as exc:
            refused = exc.state
        else:
            check_step(before, executed)
            assert executed.state is EXECUTED
            self.executions += 1
            self.request = executed
            return
        assert before.state is not APPROVED
        # A pending request past its expiry is refused as expired, not as pending.
        assert refused is (EXPIRED if self.due_to_expire() else before.state)


@given(scenarios())
def test_random_schedules_never_break_the_approval_invariants(scenario: Scenario) -> None:
    run = Run(request=scenario.request)
    check_invariants(run.request)
    for step in scenario.steps:
        run.now += step.advance
        if step.kind == "vote":
            run.cast(step)
        elif step.kind == "expire":
            run.sweep()
        else:
            run.execute()
        check_invariants(run.request)
    decided = run.request.state in {APPROVED, EXECUTED}
    assert run.quorum_votes == (1 if decided else 0)
    assert run.executions == (1 if run.request.state is EXECUTED else 0)


# --- two connections racing with the final approval ---


@dataclass(slots=True)
class CasStore:
    """The store's contract, trivially: a write lands only on the version it was computed from."""

    current: ApprovalRequest

    def compare_and_set(self, new: ApprovalRequest, *, expected_version: int) -> bool:
        if self.current.version != expected_version:
            return False
        self.current = new
        return True


@st.composite
def races(draw: st.DrawFn) -> tuple[ApprovalRequest, str, str]:
    """A pending request one approval short of quorum and two approvers who have not voted."""
    n = draw(st.integers(2, 6))
    members = [f"m{i}" for i in range(n)]
    required = draw(st.integers(1, n - 1))
    policy = ApprovalPolicy(group="g", members=frozenset(members), required=required)
    request = rules.new_request(
        id=ApprovalId("apr_race"),
        operation="key.destroy",
        target="kid-1",
        requester="requester",
        policy=policy,
        now=T0,
        ttl=3600,
        details={},
    )
    for i, member in enumerate(members[: required - 1]):
        vote = Vote(approver=member, decision=Decision.APPROVE, comment="", at=T0 + i)
        request = rules.vote(request, vote, T0 + i).request
    first, second = draw(st.permutations(members[required - 1 :]))[:2]
    return request, first, second


@given(races())
def test_racing_final_approvals_reach_quorum_once(race: tuple[ApprovalRequest, str, str]) -> None:
    """Both connections compute quorum from the same base; the version CAS lets one through."""
    base, first, second = race
    store = CasStore(current=base)
    now = T0 + 100
    results = {
        who: rules.vote(
            base, Vote(approver=who, decision=Decision.APPROVE, comment="", at=now), now
        )
        for who in (first, second)
    }
    assert all(r.reached_quorum for r in results.values())  # each alone would execute
    assert results[first].request.version == results[second].request.version
    executed_by = []
    for who in (first, second):
        result = results[who]
        if store.compare_and_set(result.request, expected_version=base.version):
            if result.reached_quorum:
                executed_by.append(who)
            continue
        # The loser re-reads and retries, as a handler would after a stale write: refused.
        retry_vote = Vote(approver=who, decision=Decision.APPROVE, comment="", at=now + 1)
        with pytest.raises(rules.AlreadyDecided) as refused:
            rules.vote(store.current, retry_vote, now + 1)
        assert refused.value.state is APPROVED
    assert executed_by == [first]
    assert store.current.state is APPROVED
    assert [v.approver for v in store.current.votes][-1] == first
    assert second not in {v.approver for v in store.current.votes}


@given(races())
def test_two_executors_of_one_approval_run_it_once(race: tuple[ApprovalRequest, str, str]) -> None:
    """Two replicas find the same approved request; only one mark_executed write lands."""
    base, first, _ = race
    now = T0 + 100
    vote = Vote(approver=first, decision=Decision.APPROVE, comment="", at=now)
    approved = rules.vote(base, vote, now).request
    store = CasStore(current=approved)
    landed = [
        store.compare_and_set(
            rules.mark_executed(approved, now + i), expected_version=approved.version
        )
        for i in (1, 2)
    ]
    assert landed == [True, False]
    with pytest.raises(rules.AlreadyExecuted):
        rules.mark_executed(store.current, now + 3)
