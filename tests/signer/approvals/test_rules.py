"""The M-of-N approval rules, one behaviour per test (DESIGN.md, "Access control")."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from signer import errors
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
TTL = 3600
POLICY = ApprovalPolicy(
    group="key-custodians", members=frozenset({"alice", "bob", "carol"}), required=2
)


def pending(
    *, policy: ApprovalPolicy = POLICY, requester: str = "ci", ttl: int = TTL
) -> ApprovalRequest:
    return rules.new_request(
        id=ApprovalId("apr_1"),
        operation="key.destroy",
        target="kid-1",
        requester=requester,
        policy=policy,
        now=T0,
        ttl=ttl,
        details={"reason": "compromised", "ring": "default"},
    )


def approve(who: str, at: int = T0 + 10, comment: str = "") -> Vote:
    return Vote(approver=who, decision=Decision.APPROVE, comment=comment, at=at)


def deny(who: str, at: int = T0 + 10, comment: str = "not this key") -> Vote:
    return Vote(approver=who, decision=Decision.DENY, comment=comment, at=at)


def cast(request: ApprovalRequest, *votes: Vote) -> ApprovalRequest:
    for v in votes:
        request = rules.vote(request, v, v.at).request
    return request


def approved() -> ApprovalRequest:
    return cast(pending(), approve("alice"), approve("bob", T0 + 20))


def executed() -> ApprovalRequest:
    return rules.mark_executed(approved(), T0 + 30)


def denied() -> ApprovalRequest:
    return cast(pending(), approve("alice"), deny("carol", T0 + 20))


def expired() -> ApprovalRequest:
    request = rules.expire(cast(pending(), approve("alice")), T0 + TTL)
    assert request is not None
    return request


DECIDED = [approved, executed, denied, expired]


# --- the policy and a new request ---


@pytest.mark.parametrize("required", [0, -1, 4])
def test_policy_requires_between_one_and_all_members(required: int) -> None:
    with pytest.raises(rules.InvalidPolicy, match="between 1 and"):
        ApprovalPolicy(group="g", members=frozenset({"a", "b", "c"}), required=required)


def test_policy_needs_a_group_name() -> None:
    with pytest.raises(rules.InvalidPolicy, match="group name"):
        ApprovalPolicy(group="", members=frozenset({"a"}), required=1)


def test_new_request_is_pending_at_version_one_until_ttl() -> None:
    request = pending()
    assert request.state is ApprovalState.PENDING
    assert request.version == 1
    assert (request.created_at, request.expires_at) == (T0, T0 + TTL)
    assert request.votes == ()
    assert (request.approvals, request.remaining) == (0, 2)
    assert (request.decided_at, request.executed_at) == (None, None)


@pytest.mark.parametrize("ttl", [0, -5])
def test_new_request_refuses_a_ttl_that_is_not_positive(ttl: int) -> None:
    with pytest.raises(errors.InvalidField) as caught:
        pending(ttl=ttl)
    assert caught.value.field == "ttl"


def test_new_request_refuses_when_only_the_requester_could_complete_quorum() -> None:
    """A 2-of-2 group cannot approve a request one of its two members made."""
    policy = ApprovalPolicy(group="pair", members=frozenset({"alice", "bob"}), required=2)
    with pytest.raises(rules.QuorumUnreachable, match="besides the requester 'alice'"):
        pending(policy=policy, requester="alice")


def test_a_member_may_request_when_the_others_can_reach_quorum() -> None:
    request = pending(requester="alice")
    assert request.remaining == 2


def test_details_are_a_copy_the_caller_cannot_change() -> None:
    details: dict[str, rules.DetailValue] = {"reason": "rotation"}
    request = rules.new_request(
        id=ApprovalId("apr_2"),
        operation="key.reinstate",
        target="kid-2",
        requester="admin",
        policy=POLICY,
        now=T0,
        ttl=TTL,
        details=details,
    )
    details["reason"] = "changed"
    assert request.details == {"reason": "rotation"}
    with pytest.raises(TypeError):
        request.details["reason"] = "x"  # type: ignore[index]


# --- who may vote ---


def test_requester_may_not_approve_their_own_request() -> None:
    with pytest.raises(rules.SelfApproval):
        rules.vote(pending(), approve("ci"), T0 + 10)


def test_requester_in_the_group_may_not_approve_their_own_request() -> None:
    with pytest.raises(rules.SelfApproval):
        rules.vote(pending(requester="alice"), approve("alice"), T0 + 10)


def test_requester_may_not_deny_their_own_request() -> None:
    with pytest.raises(rules.SelfApproval):
        rules.vote(pending(requester="alice"), deny("alice"), T0 + 10)


def test_non_member_may_not_vote() -> None:
    with pytest.raises(rules.NotAnApprover, match="key-custodians"):
        rules.vote(pending(), approve("mallory"), T0 + 10)


# --- counting ---


def test_approval_short_of_quorum_stays_pending_and_bumps_version() -> None:
    result = rules.vote(pending(), approve("alice"), T0 + 10)
    assert result.changed
    assert not result.reached_quorum
    assert result.request.state is ApprovalState.PENDING
    assert result.request.version == 2
    assert (result.request.approvals, result.request.remaining) == (1, 1)
    assert result.request.votes == (approve("alice"),)


def test_repeated_approvals_by_one_approver_count_once() -> None:
    """Three approvals by alice under a 2-of-3 policy leave the request pending."""
    request = cast(
        pending(), approve("alice"), approve("alice", T0 + 11), approve("alice", T0 + 12)
    )
    assert request.state is ApprovalState.PENDING
    assert request.approvals == 1
    assert len(request.votes) == 1


def test_repeated_vote_is_unchanged_and_keeps_the_version() -> None:
    once = cast(pending(), approve("alice"))
    result = rules.vote(once, approve("alice", T0 + 30, comment="again"), T0 + 30)
    assert not result.changed
    assert not result.reached_quorum
    assert result.request is once


def test_approver_may_not_turn_an_approval_into_a_deny() -> None:
    with pytest.raises(rules.VoteChanged, match="already voted approve"):
        cast(pending(), approve("alice"), deny("alice", T0 + 20))


def test_deny_wins_even_after_approvals_short_of_quorum() -> None:
    result = rules.vote(cast(pending(), approve("alice")), deny("bob", T0 + 20), T0 + 20)
    assert result.changed
    assert not result.reached_quorum
    assert result.request.state is ApprovalState.DENIED
    assert result.request.decided_at == T0 + 20
    assert result.request.version == 3


def test_quorum_approves_and_records_when() -> None:
    result = rules.vote(cast(pending(), approve("alice")), approve("bob", T0 + 20), T0 + 20)
    assert result.request.state is ApprovalState.APPROVED
    assert result.request.decided_at == T0 + 20
    assert (result.request.approvals, result.request.remaining) == (2, 0)


def test_only_the_vote_reaching_quorum_reports_it() -> None:
    request = pending()
    flags = []
    for v in (approve("alice"), approve("alice", T0 + 15), approve("bob", T0 + 20)):
        result = rules.vote(request, v, v.at)
        flags.append(result.reached_quorum)
        request = result.request
    retry = rules.vote(request, approve("bob", T0 + 25), T0 + 25)
    assert flags == [False, False, True]
    assert not retry.reached_quorum


def test_one_of_one_policy_approves_on_the_first_vote() -> None:
    solo = ApprovalPolicy(group="solo", members=frozenset({"alice"}), required=1)
    result = rules.vote(pending(policy=solo), approve("alice"), T0 + 10)
    assert result.reached_quorum
    assert result.request.state is ApprovalState.APPROVED


# --- comments ---


@pytest.mark.parametrize("comment", ["", "   \n"])
def test_deny_needs_a_comment(comment: str) -> None:
    with pytest.raises(rules.InvalidComment, match="reason") as caught:
        rules.vote(pending(), deny("alice", comment=comment), T0 + 10)
    assert caught.value.field == "comment"


def test_approve_needs_no_comment() -> None:
    assert rules.vote(pending(), approve("alice", comment=""), T0 + 10).changed


@pytest.mark.parametrize("make", [approve, deny])
def test_comment_over_the_limit_is_refused(make: Callable[..., Vote]) -> None:
    with pytest.raises(rules.InvalidComment, match="at most 1000"):
        rules.vote(pending(), make("alice", comment="x" * 1001), T0 + 10)


def test_comment_at_the_limit_is_accepted() -> None:
    assert rules.vote(pending(), deny("alice", comment="x" * 1000), T0 + 10).changed


# --- expiry ---


def test_vote_just_before_expiry_counts() -> None:
    last = T0 + TTL - 1
    assert rules.vote(pending(), approve("alice", last), last).changed


def test_vote_at_expiry_is_refused_as_expired() -> None:
    with pytest.raises(rules.ApprovalExpired) as caught:
        rules.vote(pending(), approve("alice", T0 + TTL), T0 + TTL)
    assert caught.value.state is ApprovalState.EXPIRED


def test_vote_on_a_stored_expired_request_is_refused_as_expired() -> None:
    with pytest.raises(rules.ApprovalExpired):
        rules.vote(expired(), approve("alice", T0 + TTL + 1), T0 + TTL + 1)


def test_repeated_vote_after_expiry_is_refused_as_expired() -> None:
    once = cast(pending(), approve("alice"))
    with pytest.raises(rules.ApprovalExpired):
        rules.vote(once, approve("alice", T0 + TTL), T0 + TTL)


def test_expire_is_none_before_expires_at() -> None:
    assert rules.expire(pending(), T0 + TTL - 1) is None


def test_expire_moves_a_due_pending_request_to_expired() -> None:
    request = cast(pending(), approve("alice"))
    after = rules.expire(request, T0 + TTL + 100)
    assert after is not None
    assert after.state is ApprovalState.EXPIRED
    assert after.decided_at == T0 + TTL
    assert after.version == request.version + 1
    assert after.votes == request.votes


def test_expire_gives_every_replica_the_same_record() -> None:
    """decided_at is expires_at, so replicas with different clocks write the same thing."""
    assert rules.expire(pending(), T0 + TTL) == rules.expire(pending(), T0 + TTL + 500)


@pytest.mark.parametrize("decided", DECIDED, ids=lambda f: f.__name__)
def test_expire_leaves_a_decided_request_alone(decided: Callable[[], ApprovalRequest]) -> None:
    assert rules.expire(decided(), T0 + 10 * TTL) is None


def test_approved_request_does_not_expire() -> None:
    """Quorum was reached in time; the shell may still execute it after expires_at."""
    assert rules.mark_executed(approved(), T0 + 2 * TTL).state is ApprovalState.EXECUTED


# --- after the decision ---


@pytest.mark.parametrize("late", [approve("carol", T0 + 30), deny("carol", T0 + 30)])
def test_votes_after_approval_are_refused(late: Vote) -> None:
    with pytest.raises(rules.AlreadyDecided, match="already approved") as caught:
        rules.vote(approved(), late, T0 + 30)
    assert caught.value.state is ApprovalState.APPROVED


def test_votes_after_a_deny_are_refused() -> None:
    with pytest.raises(rules.AlreadyDecided, match="already denied"):
        rules.vote(denied(), approve("bob", T0 + 20), T0 + 20)


def test_denier_may_not_approve_after_the_deny() -> None:
    with pytest.raises(rules.AlreadyDecided):
        rules.vote(denied(), approve("carol", T0 + 30), T0 + 30)


def test_votes_after_execution_are_refused() -> None:
    with pytest.raises(rules.AlreadyDecided, match="already executed"):
        rules.vote(executed(), approve("carol", T0 + 40), T0 + 40)


def test_retried_final_vote_is_unchanged_and_does_not_reach_quorum_again() -> None:
    """An HTTP retry of the deciding vote is harmless: no change, nothing to execute."""
    done = approved()
    result = rules.vote(done, approve("bob", T0 + 40), T0 + 40)
    assert result == rules.VoteResult(request=done, reached_quorum=False, changed=False)


# --- execution ---


def test_mark_executed_moves_approved_to_executed() -> None:
    done = approved()
    after = rules.mark_executed(done, T0 + 30)
    assert after.state is ApprovalState.EXECUTED
    assert after.executed_at == T0 + 30
    assert after.decided_at == done.decided_at
    assert after.version == done.version + 1


def test_mark_executed_twice_is_refused() -> None:
    with pytest.raises(rules.AlreadyExecuted):
        rules.mark_executed(executed(), T0 + 31)


def test_mark_executed_before_quorum_is_refused() -> None:
    with pytest.raises(rules.ApprovalPending, match="1 more"):
        rules.mark_executed(cast(pending(), approve("alice")), T0 + 30)


def test_mark_executed_on_a_denied_request_is_refused() -> None:
    with pytest.raises(rules.AlreadyDecided, match="denied"):
        rules.mark_executed(denied(), T0 + 30)


def test_mark_executed_on_an_expired_request_is_refused() -> None:
    with pytest.raises(rules.ApprovalExpired):
        rules.mark_executed(expired(), T0 + TTL)


def test_mark_executed_on_a_pending_request_past_expiry_is_refused_as_expired() -> None:
    with pytest.raises(rules.ApprovalExpired):
        rules.mark_executed(pending(), T0 + TTL)


# --- JSON ---


def test_to_json_has_the_api_shape() -> None:
    request = cast(pending(), approve("bob", T0 + 5, "ok"))
    assert rules.to_json(request) == {
        "id": "apr_1",
        "operation": "key.destroy",
        "target": "kid-1",
        "requester": "ci",
        "state": "pending",
        "created_at": T0,
        "expires_at": T0 + TTL,
        "decided_at": None,
        "executed_at": None,
        "policy": {"group": "key-custodians", "required": 2, "members": ["alice", "bob", "carol"]},
        "approvals": 1,
        "remaining": 1,
        "votes": [{"approver": "bob", "decision": "approve", "comment": "ok", "at": T0 + 5}],
        "details": {"reason": "compromised", "ring": "default"},
        "version": 2,
    }


@pytest.mark.parametrize("make", [pending, *DECIDED], ids=lambda f: f.__name__)
def test_json_round_trip_is_exact(make: Callable[[], ApprovalRequest]) -> None:
    request = make()
    wire = json.loads(json.dumps(rules.to_json(request)))
    assert rules.from_json(wire) == request
    assert rules.to_json(rules.from_json(wire)) == wire


def wire(**changes: object) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(json.dumps(rules.to_json(approved())))
    obj.update(changes)
    return obj


def test_from_json_refuses_an_unknown_member() -> None:
    with pytest.raises(errors.UnknownField) as caught:
        rules.from_json(wire(admin=True))
    assert caught.value.field == "admin"


def test_from_json_refuses_a_missing_member() -> None:
    obj = wire()
    del obj["version"]
    with pytest.raises(errors.InvalidField, match="lacks 'version'"):
        rules.from_json(obj)


def test_from_json_refuses_a_boolean_for_an_integer() -> None:
    with pytest.raises(errors.InvalidField, match="version must be an integer"):
        rules.from_json(wire(version=True))


def test_from_json_refuses_an_unknown_state() -> None:
    with pytest.raises(errors.InvalidField, match="state must be one of"):
        rules.from_json(wire(state="done"))


def test_from_json_refuses_an_unknown_decision() -> None:
    obj = wire()
    obj["votes"][0]["decision"] = "abstain"
    with pytest.raises(errors.InvalidField) as caught:
        rules.from_json(obj)
    assert caught.value.field == "votes[0].decision"


def test_from_json_refuses_derived_counts_that_disagree_with_the_votes() -> None:
    with pytest.raises(errors.InvalidField, match="remaining is 1"):
        rules.from_json(wire(remaining=1))


def test_from_json_refuses_a_record_where_the_requester_voted() -> None:
    obj = wire(requester="alice", approvals=1, remaining=1)
    with pytest.raises(errors.InvalidField, match="the requester voted"):
        rules.from_json(obj)


def test_from_json_refuses_approved_without_quorum() -> None:
    obj = wire()
    obj["votes"] = obj["votes"][:1]
    obj.update(approvals=1, remaining=1)
    with pytest.raises(errors.InvalidField, match="cannot leave it approved"):
        rules.from_json(obj)


def test_from_json_refuses_an_unsatisfiable_policy() -> None:
    obj = wire()
    obj["policy"]["required"] = 4
    with pytest.raises(errors.InvalidField, match="between 1 and") as caught:
        rules.from_json(obj)
    assert caught.value.field == "policy"


def test_from_json_refuses_non_scalar_details() -> None:
    with pytest.raises(errors.InvalidField, match=r"details\.reason"):
        rules.from_json(wire(details={"reason": ["a"]}))


# --- errors ---


@pytest.mark.parametrize(
    ("cls", "base", "code", "status"),
    [
        (rules.SelfApproval, errors.Forbidden, "self_approval", 403),
        (rules.NotAnApprover, errors.Forbidden, "not_an_approver", 403),
        (rules.AlreadyDecided, errors.Conflict, "already_decided", 409),
        (rules.ApprovalExpired, rules.AlreadyDecided, "approval_expired", 409),
        (rules.AlreadyExecuted, rules.AlreadyDecided, "already_executed", 409),
        (rules.VoteChanged, errors.Conflict, "vote_changed", 409),
        (rules.ApprovalPending, errors.Conflict, "approval_pending", 409),
        (rules.QuorumUnreachable, errors.Conflict, "quorum_unreachable", 409),
        (rules.InvalidComment, errors.BadRequest, "invalid_comment", 400),
        (rules.UnknownApproval, errors.NotFound, "unknown_approval", 404),
        (rules.InvalidPolicy, errors.ConfigError, "invalid_approval_policy", 500),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_approval_errors_are_signer_errors_with_their_own_code(
    cls: type[errors.SignerError], base: type[errors.SignerError], code: str, status: int
) -> None:
    assert issubclass(cls, base)
    assert (cls.code, cls.status) == (code, status)
    assert cls.title != base.title


def test_already_decided_names_the_state() -> None:
    with pytest.raises(rules.AlreadyDecided) as caught:
        rules.vote(denied(), approve("bob", T0 + 30), T0 + 30)
    assert caught.value.state is ApprovalState.DENIED
    assert "denied" in caught.value.detail
