"""The approval predicate: building, the quorum rules, and strict parsing."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from attest.approval import (
    APPROVAL_PREDICATE_TYPE,
    Approval,
    ApprovalPolicy,
    ApprovalPredicate,
    SigningRequestRecord,
    approval_from_json,
    approval_to_json,
)
from attest.errors import AttestError
from attest.intoto import Statement, Subject, dumps_statement, loads_statement

_T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _predicate(**changes: Any) -> ApprovalPredicate:
    fields: dict[str, Any] = {
        "request": SigningRequestRecord(
            id="req-1",
            profile="release",
            kind="blob",
            reason="ship 1.0",
            change_id="CHG-42",
            created=_T0,
        ),
        "requester": "ci-release",
        "policy": ApprovalPolicy(required=2, group="release-managers", eligible=3),
        "approvals": (
            Approval(approver="alice", time=_T0 + timedelta(minutes=1)),
            Approval(approver="bob", time=_T0 + timedelta(minutes=2, microseconds=500)),
        ),
        "decided": _T0 + timedelta(minutes=2, microseconds=500),
    }
    fields.update(changes)
    return ApprovalPredicate(**fields)


def test_predicate_json_matches_the_documented_schema() -> None:
    assert approval_to_json(_predicate()) == {
        "request": {
            "id": "req-1",
            "profile": "release",
            "kind": "blob",
            "reason": "ship 1.0",
            "change_id": "CHG-42",
            "created": "2024-05-01T12:00:00Z",
        },
        "requester": "ci-release",
        "policy": {"required": 2, "group": "release-managers", "eligible": 3},
        "approvals": [
            {"approver": "alice", "time": "2024-05-01T12:01:00Z", "decision": "approve"},
            {"approver": "bob", "time": "2024-05-01T12:02:00.000500Z", "decision": "approve"},
        ],
        "decided": "2024-05-01T12:02:00.000500Z",
    }


def test_predicate_round_trips_through_a_signed_statement_payload() -> None:
    predicate = _predicate()
    statement = Statement(
        subjects=(Subject(name="acme.tgz", sha256="0" * 64),),
        predicate_type=APPROVAL_PREDICATE_TYPE,
        predicate=dict(approval_to_json(predicate)),
    )

    parsed = loads_statement(dumps_statement(statement))

    assert approval_from_json(parsed.predicate) == predicate


def test_times_in_other_zones_are_written_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    request = dataclasses.replace(_predicate().request, created=_T0.astimezone(plus_two))

    assert approval_to_json(_predicate(request=request))["request"]["created"] == (
        "2024-05-01T12:00:00Z"
    )


def test_null_change_id_round_trips() -> None:
    request = dataclasses.replace(_predicate().request, change_id=None)
    predicate = _predicate(request=request)

    assert approval_to_json(predicate)["request"]["change_id"] is None
    assert approval_from_json(approval_to_json(predicate)) == predicate


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"approvals": (Approval(approver="alice", time=_T0),)}, "1 approvals do not meet"),
        (
            {"policy": ApprovalPolicy(required=3, group="g", eligible=2)},
            "1 <= required <= eligible",
        ),
        ({"policy": ApprovalPolicy(required=0, group="g", eligible=2)}, "1 <= required"),
        (
            {
                "approvals": (
                    Approval(approver="alice", time=_T0),
                    Approval(approver="alice", time=_T0),
                )
            },
            "approves more than once",
        ),
        (
            {
                "approvals": (
                    Approval(approver="ci-release", time=_T0),
                    Approval(approver="alice", time=_T0),
                )
            },
            "requester 'ci-release' cannot approve",
        ),
        (
            {
                "approvals": (
                    Approval(approver="bob", time=_T0 - timedelta(seconds=1)),
                    Approval(approver="alice", time=_T0),
                )
            },
            "between request.created and decided",
        ),
        ({"decided": _T0}, "between request.created and decided"),
        ({"decided": datetime(2024, 5, 2)}, "no time zone"),  # noqa: DTZ001
        ({"requester": ""}, "requester must not be empty"),
        ({"policy": ApprovalPolicy(required=1, group="g", eligible=1)}, "2 approvals from 1"),
    ],
    ids=[
        "too-few",
        "required-above-eligible",
        "zero-required",
        "approver-twice",
        "self-approval",
        "approval-before-request",
        "decided-before-approval",
        "naive-time",
        "no-requester",
        "more-approvals-than-eligible",
    ],
)
def test_predicate_rules_are_enforced(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AttestError, match=message):
        _predicate(**changes)


def _wire(**path_values: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(approval_to_json(_predicate())))
    for path, value in path_values.items():
        *parents, last = path.split("__")
        node: Any = document
        for name in parents:
            node = node[int(name)] if name.isdigit() else node[name]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return document


_DROP = object()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_wire(extra=1), "unknown member 'extra'"),
        (_wire(request__extra=1), "request: unknown member 'extra'"),
        (_wire(request__change_id=_DROP), "missing member 'change_id'"),
        (_wire(request__change_id=""), "change_id: must not be empty"),
        (_wire(request__created="2024-05-01T12:00:00+00:00"), "RFC 3339 UTC"),
        (_wire(request__created="2024-05-01 12:00:00Z"), "RFC 3339 UTC"),
        (_wire(request__created="2024-13-01T12:00:00Z"), "not a valid date"),
        (_wire(policy__required=True), "expected an integer"),
        (_wire(policy__eligible=2.0), "expected an integer"),
        (_wire(approvals__0__decision="reject"), "must be 'approve'"),
        (_wire(approvals__0__extra=1), "unknown member"),
        (_wire(approvals=[]), "approvals: must not be empty"),
        (_wire(approvals__1__approver="alice"), "approves more than once"),
        (_wire(decided=5), "expected an RFC 3339 time string"),
        (_wire(decided="2024-05-01T12:02:00.\u0665Z"), "RFC 3339 UTC"),
    ],
    ids=[
        "unknown-top",
        "unknown-request",
        "missing-change-id",
        "empty-change-id",
        "offset-time",
        "space-separator",
        "impossible-date",
        "bool-required",
        "float-eligible",
        "rejection",
        "unknown-approval",
        "no-approvals",
        "duplicate-approver",
        "number-time",
        "arabic-indic-digit",
    ],
)
def test_parsing_refuses_malformed_predicates(document: dict[str, Any], message: str) -> None:
    with pytest.raises(AttestError, match=message):
        approval_from_json(document)
