"""The approval attestation predicate: who asked for a signature, and who approved it.

Predicate type ``https://signer.dev/attestation/approval/v1``. The signer issues it, as an in-toto
Statement v1 over the same subjects as the signed artifacts, once an M-of-N quorum has approved a
signing request. Schema (all members required; times are RFC 3339 UTC, ``...Z``)::

    {
      "request": {
        "id": "<signing request id>",
        "profile": "<signing profile name>",
        "kind": "<what is signed, e.g. 'container', 'blob', 'provenance'>",
        "reason": "<the requester's stated reason>",
        "change_id": "<change ticket id>" | null,
        "created": "<time the request was made>"
      },
      "requester": "<principal name of the requester>",
      "policy": {"required": M, "group": "<approver group>", "eligible": N},
      "approvals": [
        {"approver": "<principal name>", "time": "<time of the vote>", "decision": "approve"}
      ],
      "decided": "<time the quorum was reached>"
    }

Rules, checked when a value is built and when one is parsed (so a parsed predicate is one the
signer could have issued):

- ``1 <= required <= eligible``, and there are at least ``required`` approvals;
- each approver appears once, and the requester never approves their own request (separation of
  duties, DESIGN "Access control");
- ``decision`` is ``"approve"``: a rejected request gets no attestation;
- ``created <= time`` of every approval ``<= decided``.

Parsing is strict: unknown members, wrong types and other spellings of times are refused. This
package never reads the clock; every time comes from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypedDict

from attest import ijson
from attest.errors import AttestError
from attest.rfc3339 import format_time, parse_time

__all__ = [
    "APPROVAL_PREDICATE_TYPE",
    "Approval",
    "ApprovalJson",
    "ApprovalPolicy",
    "ApprovalPredicate",
    "ApprovalPredicateJson",
    "PolicyJson",
    "RequestJson",
    "SigningRequestRecord",
    "approval_from_json",
    "approval_to_json",
]

APPROVAL_PREDICATE_TYPE: Final = "https://signer.dev/attestation/approval/v1"


class RequestJson(TypedDict):
    """``request``: the signing request as it was made."""

    id: str
    profile: str
    kind: str
    reason: str
    change_id: str | None
    created: str


class PolicyJson(TypedDict):
    """``policy``: the quorum that applied."""

    required: int
    group: str
    eligible: int


class ApprovalJson(TypedDict):
    """One entry of ``approvals``."""

    approver: str
    time: str
    decision: Literal["approve"]


class ApprovalPredicateJson(TypedDict):
    """The approval predicate (see the module docstring)."""

    request: RequestJson
    requester: str
    policy: PolicyJson
    approvals: list[ApprovalJson]
    decided: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRequestRecord:
    """The signing request an approval attestation is about."""

    id: str
    profile: str
    kind: str
    reason: str
    change_id: str | None
    created: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalPolicy:
    """The quorum: ``required`` approvals from ``group``, which had ``eligible`` members."""

    required: int
    group: str
    eligible: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """One approver's vote for the request."""

    approver: str
    time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalPredicate:
    """An approval predicate; construction checks the rules in the module docstring."""

    request: SigningRequestRecord
    requester: str
    policy: ApprovalPolicy
    approvals: tuple[Approval, ...]
    decided: datetime

    def __post_init__(self) -> None:
        _check(self)


def _check(predicate: ApprovalPredicate) -> None:
    request, policy = predicate.request, predicate.policy
    for name in ("id", "profile", "kind"):
        if not getattr(request, name):
            raise AttestError(f"request.{name} must not be empty")
    if request.change_id == "":
        raise AttestError("request.change_id must be None or a non-empty string")
    if not predicate.requester:
        raise AttestError("requester must not be empty")
    if not policy.group:
        raise AttestError("policy.group must not be empty")
    _check_counts(policy, len(predicate.approvals))
    created = _utc(request.created, "request.created")
    decided = _utc(predicate.decided, "decided")
    seen: set[str] = set()
    for index, approval in enumerate(predicate.approvals):
        where = f"approvals[{index}]"
        if not approval.approver:
            raise AttestError(f"{where}.approver must not be empty")
        if approval.approver == predicate.requester:
            # DESIGN "Access control": a requester never approves their own request.
            raise AttestError(f"{where}: the requester {approval.approver!r} cannot approve")
        if approval.approver in seen:
            # DESIGN "Access control": each approver counts once.
            raise AttestError(f"{where}: {approval.approver!r} approves more than once")
        seen.add(approval.approver)
        time = _utc(approval.time, f"{where}.time")
        if not created <= time <= decided:
            raise AttestError(f"{where}.time must lie between request.created and decided")


def _check_counts(policy: ApprovalPolicy, approvals: int) -> None:
    """1 <= required <= approvals <= eligible."""
    if not 1 <= policy.required <= policy.eligible:
        raise AttestError(
            f"policy needs 1 <= required <= eligible, not required={policy.required}, "
            f"eligible={policy.eligible}"
        )
    if approvals < policy.required:
        raise AttestError(f"{approvals} approvals do not meet the {policy.required} required")
    if approvals > policy.eligible:
        raise AttestError(f"{approvals} approvals from {policy.eligible} eligible approvers")


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise AttestError(f"{what} has no time zone; pass an aware datetime")
    return value


def approval_to_json(predicate: ApprovalPredicate) -> ApprovalPredicateJson:
    """Return the predicate JSON object, for :class:`attest.intoto.Statement`."""
    request = predicate.request
    return {
        "request": {
            "id": request.id,
            "profile": request.profile,
            "kind": request.kind,
            "reason": request.reason,
            "change_id": request.change_id,
            "created": format_time(request.created),
        },
        "requester": predicate.requester,
        "policy": {
            "required": predicate.policy.required,
            "group": predicate.policy.group,
            "eligible": predicate.policy.eligible,
        },
        "approvals": [
            {
                "approver": approval.approver,
                "time": format_time(approval.time),
                "decision": "approve",
            }
            for approval in predicate.approvals
        ],
        "decided": format_time(predicate.decided),
    }


def approval_from_json(value: object) -> ApprovalPredicate:
    """Parse an approval predicate strictly (e.g. ``statement.predicate``)."""
    what = "approval predicate"
    obj = ijson.expect_members(
        dict(value) if isinstance(value, Mapping) else value,
        what,
        required=("request", "requester", "policy", "approvals", "decided"),
    )
    req = ijson.expect_members(
        obj["request"],
        f"{what}: request",
        required=("id", "profile", "kind", "reason", "change_id", "created"),
    )
    change_id = req["change_id"]
    request = SigningRequestRecord(
        id=ijson.expect_str(req["id"], f"{what}: request.id"),
        profile=ijson.expect_str(req["profile"], f"{what}: request.profile"),
        kind=ijson.expect_str(req["kind"], f"{what}: request.kind"),
        reason=ijson.expect_str(req["reason"], f"{what}: request.reason", empty=True),
        change_id=None
        if change_id is None
        else ijson.expect_str(change_id, f"{what}: request.change_id"),
        created=parse_time(req["created"], f"{what}: request.created"),
    )
    pol = ijson.expect_members(
        obj["policy"], f"{what}: policy", required=("required", "group", "eligible")
    )
    policy = ApprovalPolicy(
        required=ijson.expect_int(pol["required"], f"{what}: policy.required", minimum=1),
        group=ijson.expect_str(pol["group"], f"{what}: policy.group"),
        eligible=ijson.expect_int(pol["eligible"], f"{what}: policy.eligible", minimum=1),
    )
    approvals = []
    for index, entry in enumerate(ijson.expect_list(obj["approvals"], f"{what}: approvals")):
        where = f"{what}: approvals[{index}]"
        item = ijson.expect_members(entry, where, required=("approver", "time", "decision"))
        decision = ijson.expect_str(item["decision"], f"{where}.decision")
        if decision != "approve":
            raise AttestError(f"{where}.decision: must be 'approve', not {decision!r}")
        approvals.append(
            Approval(
                approver=ijson.expect_str(item["approver"], f"{where}.approver"),
                time=parse_time(item["time"], f"{where}.time"),
            )
        )
    requester = ijson.expect_str(obj["requester"], f"{what}: requester")
    decided = parse_time(obj["decided"], f"{what}: decided")
    try:
        return ApprovalPredicate(
            request=request,
            requester=requester,
            policy=policy,
            approvals=tuple(approvals),
            decided=decided,
        )
    except AttestError as exc:
        raise AttestError(f"{what}: {exc}") from exc
