"""M-of-N approvals as pure transitions over immutable requests (DESIGN.md, "Access control").

A sensitive operation (``key.destroy``, ``key.reinstate``, ``signing``) runs only once
``policy.required`` distinct members of the policy's group have approved it. Separation of
duties: the requester never votes, each approver counts once and may not change their mind, any
deny ends the request, and a request that has not reached quorum by ``expires_at`` expires.

::

    pending ──quorum──▶ approved ──mark_executed──▶ executed
       ├────any deny──▶ denied
       └──now ≥ expires_at (expire)──▶ expired

Nothing here reads a clock or a store. Each transition returns the next request with
``version + 1``; the shell writes it with a compare-and-set on ``version``. Two replicas that both
accept the final approval derive the same next version from the same base, so only one write
lands and only its ``VoteResult.reached_quorum`` is acted on: the shell runs the operation for
that vote (or, after a crash, for a request it finds ``approved``) and then persists
``mark_executed``, which refuses a second time. ``expire`` is separate so the shell can persist an
expiry before it reports the refused vote.

Errors, all ``signer.errors`` subclasses::

    Forbidden
    ├── SelfApproval (403 self_approval)
    └── NotAnApprover (403 not_an_approver)
    Conflict
    ├── AlreadyDecided (409 already_decided)
    │   ├── ApprovalExpired (409 approval_expired)
    │   └── AlreadyExecuted (409 already_executed)
    ├── VoteChanged (409 vote_changed)
    ├── ApprovalPending (409 approval_pending)
    └── QuorumUnreachable (409 quorum_unreachable)
    BadRequest
    └── InvalidComment (400 invalid_comment)
    NotFound
    └── UnknownApproval (404 unknown_approval)       for the shell's look-up by id
    ConfigError
    └── InvalidPolicy (500 invalid_approval_policy)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NewType, TypeAlias, TypedDict

from signer.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidField,
    NotFound,
    UnknownField,
)

ApprovalId = NewType("ApprovalId", str)
DetailValue: TypeAlias = str | int | bool | None

MAX_COMMENT = 1000  # characters; a comment is a reason for the audit log, not a document


class Decision(enum.StrEnum):
    """What an approver says."""

    APPROVE = "approve"
    DENY = "deny"


class ApprovalState(enum.StrEnum):
    """Where a request is; only ``pending`` accepts votes."""

    PENDING = "pending"
    APPROVED = "approved"  # quorum reached: the operation is due
    EXECUTED = "executed"  # the shell ran the operation (mark_executed)
    DENIED = "denied"
    EXPIRED = "expired"


class SelfApproval(Forbidden):
    """The requester tried to vote on their own request."""

    code = "self_approval"
    title = "Self-approval"


class NotAnApprover(Forbidden):
    """The voter is not a member of the policy's approver group."""

    code = "not_an_approver"
    title = "Not an approver"


class AlreadyDecided(Conflict):
    """The request is no longer pending; ``state`` says what it became."""

    code = "already_decided"
    title = "Already decided"

    def __init__(self, detail: str, *, state: ApprovalState) -> None:
        super().__init__(detail)
        self.state = state


class ApprovalExpired(AlreadyDecided):
    """The request expired before reaching quorum."""

    code = "approval_expired"
    title = "Approval expired"


class AlreadyExecuted(AlreadyDecided):
    """The approved operation has already been run."""

    code = "already_executed"
    title = "Already executed"


class VoteChanged(Conflict):
    """An approver tried to replace their vote with the opposite decision."""

    code = "vote_changed"
    title = "Vote changed"


class ApprovalPending(Conflict):
    """The operation cannot run: the request has not reached quorum."""

    code = "approval_pending"
    title = "Approval pending"


class QuorumUnreachable(Conflict):
    """Without the requester, the group has too few members to ever reach quorum."""

    code = "quorum_unreachable"
    title = "Quorum unreachable"


class InvalidComment(BadRequest):
    """A deny without a reason, or a comment over ``MAX_COMMENT`` characters."""

    code = "invalid_comment"
    title = "Invalid comment"


class UnknownApproval(NotFound):
    """No approval request with that id."""

    code = "unknown_approval"
    title = "Unknown approval"


class InvalidPolicy(ConfigError):
    """An approval policy that no vote could satisfy, or that needs no vote."""

    code = "invalid_approval_policy"
    title = "Invalid approval policy"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalPolicy:
    """``required`` of the ``members`` of ``group`` must approve."""

    group: str
    members: frozenset[str]
    required: int

    def __post_init__(self) -> None:
        if not self.group:
            raise InvalidPolicy("an approval policy needs a group name")
        if not all(self.members):
            raise InvalidPolicy(f"group {self.group!r} has a member with an empty name")
        if not 1 <= self.required <= len(self.members):
            raise InvalidPolicy(
                f"group {self.group!r}: required must be between 1 and its "
                f"{len(self.members)} members, got {self.required}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """One approver's decision, with the reason given and when (Unix seconds)."""

    approver: str
    decision: Decision
    comment: str
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequest:
    """One request for an operation and every vote on it so far."""

    id: ApprovalId
    operation: str  # e.g. "key.destroy", "key.reinstate", "signing"
    target: str  # e.g. a kid or a signing request id
    requester: str
    policy: ApprovalPolicy  # a snapshot: a config change does not move an open request
    created_at: int
    expires_at: int
    votes: tuple[Vote, ...]
    state: ApprovalState
    version: int  # +1 on every change; the store's compare-and-set token
    details: Mapping[str, DetailValue] = field(hash=False)  # the operation's parameters
    decided_at: int | None
    executed_at: int | None

    @property
    def approvals(self) -> int:
        """How many distinct eligible approvers have approved."""
        return len(_approvers(self))

    @property
    def remaining(self) -> int:
        """How many more approvals quorum needs (0 once reached)."""
        return max(0, self.policy.required - self.approvals)


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteResult:
    """The request after a vote; ``reached_quorum`` is true for exactly one vote, if any."""

    request: ApprovalRequest
    reached_quorum: bool  # this vote moved the request to approved: the shell executes now
    changed: bool  # false for a repeated vote; nothing to persist


def _approvers(request: ApprovalRequest) -> frozenset[str]:
    # Filter again so that even a tampered record can never count the requester or an outsider.
    return frozenset(
        v.approver
        for v in request.votes
        if v.decision is Decision.APPROVE
        and v.approver in request.policy.members
        and v.approver != request.requester
    )


def _frozen(details: Mapping[str, DetailValue]) -> Mapping[str, DetailValue]:
    return MappingProxyType(dict(details))


def new_request(
    *,
    id: ApprovalId,  # noqa: A002 -- the record's own field name, keyword-only
    operation: str,
    target: str,
    requester: str,
    policy: ApprovalPolicy,
    now: int,
    ttl: int,
    details: Mapping[str, DetailValue],
) -> ApprovalRequest:
    """A pending request that expires ``ttl`` seconds after ``now``."""
    if ttl <= 0:
        raise InvalidField(f"an approval's ttl must be positive, got {ttl}", field="ttl")
    eligible = policy.members - {requester}
    if len(eligible) < policy.required:
        # Separation of duties: the requester's own membership does not count towards quorum.
        raise QuorumUnreachable(
            f"{operation} needs {policy.required} approvals from {policy.group!r}, which has "
            f"only {len(eligible)} members besides the requester {requester!r}"
        )
    return ApprovalRequest(
        id=id,
        operation=operation,
        target=target,
        requester=requester,
        policy=policy,
        created_at=now,
        expires_at=now + ttl,
        votes=(),
        state=ApprovalState.PENDING,
        version=1,
        details=_frozen(details),
        decided_at=None,
        executed_at=None,
    )


def _is_expired(request: ApprovalRequest, now: int) -> bool:
    return request.state is ApprovalState.EXPIRED or (
        request.state is ApprovalState.PENDING and now >= request.expires_at
    )


def _check_comment(vote: Vote) -> None:
    if len(vote.comment) > MAX_COMMENT:
        raise InvalidComment(
            f"a comment is at most {MAX_COMMENT} characters, got {len(vote.comment)}",
            field="comment",
        )
    if vote.decision is Decision.DENY and not vote.comment.strip():
        raise InvalidComment("a deny needs a comment giving the reason", field="comment")


def check_voter(request: ApprovalRequest, approver: str) -> None:
    """``SelfApproval`` or ``NotAnApprover`` unless ``approver`` may vote on ``request``."""
    if approver == request.requester:
        raise SelfApproval(f"{approver!r} requested {request.id} and may not vote on it")
    if approver not in request.policy.members:
        raise NotAnApprover(
            f"{approver!r} is not in {request.policy.group!r}, which approves {request.operation}"
        )


def vote(request: ApprovalRequest, vote: Vote, now: int) -> VoteResult:
    """Apply ``vote`` at ``now``, or raise why it is refused.

    Checks, in order: the voter (``SelfApproval``, ``NotAnApprover``), the comment
    (``InvalidComment``), expiry (``ApprovalExpired``, also while still stored as pending: the
    shell persists ``expire`` first). A repeat of the voter's recorded decision is then accepted
    with ``changed=False`` in any state, so a retried request is harmless; anything else on a
    decided request is ``AlreadyDecided``, and the opposite decision is ``VoteChanged``.
    """
    approver = vote.approver
    check_voter(request, approver)
    _check_comment(vote)
    if _is_expired(request, now):
        raise ApprovalExpired(
            f"approval {request.id} expired at {request.expires_at}", state=ApprovalState.EXPIRED
        )
    previous = next((v for v in request.votes if v.approver == approver), None)
    if previous is not None and previous.decision is vote.decision:
        return VoteResult(request=request, reached_quorum=False, changed=False)
    if request.state is not ApprovalState.PENDING:
        raise AlreadyDecided(
            f"approval {request.id} is already {request.state}", state=request.state
        )
    if previous is not None:
        raise VoteChanged(
            f"{approver!r} already voted {previous.decision} on {request.id}; votes are final"
        )
    voted = replace(request, votes=(*request.votes, vote), version=request.version + 1)
    if vote.decision is Decision.DENY:
        denied = replace(voted, state=ApprovalState.DENIED, decided_at=now)
        return VoteResult(request=denied, reached_quorum=False, changed=True)
    if voted.approvals >= voted.policy.required:
        approved = replace(voted, state=ApprovalState.APPROVED, decided_at=now)
        return VoteResult(request=approved, reached_quorum=True, changed=True)
    return VoteResult(request=voted, reached_quorum=False, changed=True)


def expire(request: ApprovalRequest, now: int) -> ApprovalRequest | None:
    """The expired request if it is pending and ``now`` has reached ``expires_at``, else None.

    ``decided_at`` is ``expires_at``, not ``now``: every replica derives the same record.
    """
    if request.state is not ApprovalState.PENDING or now < request.expires_at:
        return None
    return replace(
        request,
        state=ApprovalState.EXPIRED,
        decided_at=request.expires_at,
        version=request.version + 1,
    )


def mark_executed(request: ApprovalRequest, now: int) -> ApprovalRequest:
    """Record that the approved operation ran; refuse anything but an ``approved`` request."""
    state = request.state
    if state is ApprovalState.APPROVED:
        return replace(
            request, state=ApprovalState.EXECUTED, executed_at=now, version=request.version + 1
        )
    if state is ApprovalState.EXECUTED:
        raise AlreadyExecuted(f"approval {request.id} was already executed", state=state)
    if _is_expired(request, now):
        raise ApprovalExpired(
            f"approval {request.id} expired at {request.expires_at}", state=ApprovalState.EXPIRED
        )
    if state is ApprovalState.PENDING:
        raise ApprovalPending(
            f"approval {request.id} needs {request.remaining} more approvals before "
            f"{request.operation} may run"
        )
    raise AlreadyDecided(f"approval {request.id} is already {state}", state=state)


class PolicyJson(TypedDict):
    """The wire shape of an ``ApprovalPolicy``."""

    group: str
    required: int
    members: list[str]  # sorted


class VoteJson(TypedDict):
    """The wire shape of a ``Vote``."""

    approver: str
    decision: str
    comment: str
    at: int


class ApprovalJson(TypedDict):
    """The wire shape of an ``ApprovalRequest`` (API responses and stored records)."""

    id: str
    operation: str
    target: str
    requester: str
    state: str
    created_at: int
    expires_at: int
    decided_at: int | None
    executed_at: int | None
    policy: PolicyJson
    approvals: int
    remaining: int
    votes: list[VoteJson]
    details: dict[str, DetailValue]
    version: int


def to_json(request: ApprovalRequest) -> ApprovalJson:
    """The API shape of ``request``; ``from_json`` reads it back to an equal request."""
    return {
        "id": request.id,
        "operation": request.operation,
        "target": request.target,
        "requester": request.requester,
        "state": request.state.value,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "decided_at": request.decided_at,
        "executed_at": request.executed_at,
        "policy": {
            "group": request.policy.group,
            "required": request.policy.required,
            "members": sorted(request.policy.members),
        },
        "approvals": request.approvals,
        "remaining": request.remaining,
        "votes": [
            {"approver": v.approver, "decision": v.decision.value, "comment": v.comment, "at": v.at}
            for v in request.votes
        ],
        "details": dict(request.details),
        "version": request.version,
    }


class _Object:
    """One JSON object read strictly: exactly ``keys``, each member type-checked."""

    def __init__(self, obj: object, path: str, keys: tuple[str, ...]) -> None:
        if not isinstance(obj, Mapping):
            raise InvalidField(f"{path} must be an object", field=path)
        self._obj: Mapping[object, object] = obj
        self._path = path
        unknown = sorted(str(k) for k in obj if k not in keys)
        if unknown:
            raise UnknownField(
                f"{path} has unknown member {unknown[0]!r}", field=self._at(unknown[0])
            )
        missing = [k for k in keys if k not in obj]
        if missing:
            raise InvalidField(f"{path} lacks {missing[0]!r}", field=self._at(missing[0]))

    def _at(self, key: str) -> str:
        return key if self._path == "approval" else f"{self._path}.{key}"

    def get(self, key: str) -> object:
        return self._obj[key]

    def text(self, key: str) -> str:
        value = self._obj[key]
        if not isinstance(value, str):
            raise InvalidField(f"{self._at(key)} must be a string", field=self._at(key))
        return value

    def integer(self, key: str) -> int:
        value = self._obj[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidField(f"{self._at(key)} must be an integer", field=self._at(key))
        return value

    def optional_integer(self, key: str) -> int | None:
        return None if self._obj[key] is None else self.integer(key)

    def items(self, key: str) -> list[object]:
        value = self._obj[key]
        if not isinstance(value, list):
            raise InvalidField(f"{self._at(key)} must be an array", field=self._at(key))
        return value

    def choice(self, key: str, enum_type: type[enum.StrEnum]) -> str:
        value = self.text(key)
        if value not in {m.value for m in enum_type}:
            allowed = ", ".join(m.value for m in enum_type)
            raise InvalidField(f"{self._at(key)} must be one of {allowed}", field=self._at(key))
        return value


_KEYS = tuple(ApprovalJson.__annotations__)
_POLICY_KEYS = tuple(PolicyJson.__annotations__)
_VOTE_KEYS = tuple(VoteJson.__annotations__)


def _policy(obj: object) -> ApprovalPolicy:
    o = _Object(obj, "policy", _POLICY_KEYS)
    members = o.items("members")
    if not all(isinstance(m, str) for m in members) or len(set(members)) != len(members):
        raise InvalidField("policy.members must be distinct strings", field="policy.members")
    try:
        return ApprovalPolicy(
            group=o.text("group"),
            members=frozenset(str(m) for m in members),
            required=o.integer("required"),
        )
    except InvalidPolicy as exc:
        raise InvalidField(exc.detail, field="policy") from exc


def _vote(obj: object, i: int) -> Vote:
    o = _Object(obj, f"votes[{i}]", _VOTE_KEYS)
    return Vote(
        approver=o.text("approver"),
        decision=Decision(o.choice("decision", Decision)),
        comment=o.text("comment"),
        at=o.integer("at"),
    )


def _details(obj: object) -> Mapping[str, DetailValue]:
    if not isinstance(obj, Mapping):
        raise InvalidField("details must be an object", field="details")
    result: dict[str, DetailValue] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, str | int | bool | None):
            raise InvalidField(
                f"details.{key} must be a string, integer, boolean or null", field="details"
            )
        result[key] = value
    return _frozen(result)


def _check_consistent(r: ApprovalRequest) -> None:
    """Refuse a record that no sequence of transitions could have produced."""
    voters = [v.approver for v in r.votes]
    denies = [i for i, v in enumerate(r.votes) if v.decision is Decision.DENY]
    if denies:
        possible = {ApprovalState.DENIED}
    elif r.approvals >= r.policy.required:
        possible = {ApprovalState.APPROVED, ApprovalState.EXECUTED}
    else:
        possible = {ApprovalState.PENDING, ApprovalState.EXPIRED}
    checks = (
        (len(set(voters)) == len(voters), "an approver voted twice"),
        (r.requester not in voters, "the requester voted"),
        (set(voters) <= r.policy.members, "a non-member voted"),
        (denies in ([], [len(voters) - 1]), "a vote follows a deny"),
        (r.state in possible, f"the votes cannot leave it {r.state}"),
        ((r.decided_at is None) == (r.state is ApprovalState.PENDING), "decided_at is wrong"),
        ((r.executed_at is None) != (r.state is ApprovalState.EXECUTED), "executed_at is wrong"),
        (r.created_at < r.expires_at, "it expires before it was created"),
        (r.version >= 1, "its version is not positive"),
    )
    for holds, problem in checks:
        if not holds:
            raise InvalidField(f"approval {r.id}: {problem}", field="approval")


def from_json(obj: Mapping[str, object]) -> ApprovalRequest:
    """Parse the API shape back into a request, refusing any member out of shape or place.

    ``approvals`` and ``remaining`` are derived; they must agree with the votes.
    """
    o = _Object(obj, "approval", _KEYS)
    request = ApprovalRequest(
        id=ApprovalId(o.text("id")),
        operation=o.text("operation"),
        target=o.text("target"),
        requester=o.text("requester"),
        policy=_policy(o.get("policy")),
        created_at=o.integer("created_at"),
        expires_at=o.integer("expires_at"),
        votes=tuple(_vote(v, i) for i, v in enumerate(o.items("votes"))),
        state=ApprovalState(o.choice("state", ApprovalState)),
        version=o.integer("version"),
        details=_details(o.get("details")),
        decided_at=o.optional_integer("decided_at"),
        executed_at=o.optional_integer("executed_at"),
    )
    for key, derived in (("approvals", request.approvals), ("remaining", request.remaining)):
        if o.integer(key) != derived:
            raise InvalidField(f"{key} is {o.get(key)}, but the votes give {derived}", field=key)
    _check_consistent(request)
    return request
