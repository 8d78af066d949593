"""The code-signing shell on the real SoftHSM token and SQLite, with a moved clock: expiry,
resumed runs and racing final votes across two connections."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from signer.approvals.rules import (
    ApprovalExpired,
    ApprovalRequest,
    Decision,
    QuorumUnreachable,
)
from signer.approvals.shell import Approvals
from signer.audit.writer import AuditWriter
from signer.auth import Principal
from signer.codesign.records import Kind, RequestState, SigningRequest, UnknownSigningRequest
from signer.codesign.requests import KindNotSupported, parse_request
from signer.codesign.shell import OPERATION, RETRY_AFTER_S, CodeSigning
from signer.errors import HsmUnavailable, StoreUnavailable
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.keeper import Keeper
from signer.service import SignerService
from signer.settings import Settings, load_settings
from signer.store.sqlite import SqliteStore
from tests.fakes import MovingClock
from tests.hsm_token import new_key_id

TTL = 600
CONFIG = """
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "unused-here"
pin_env = "PIN"

[store]
url = "sqlite://state.db"

[[rings]]
name = "jwt-{ring}"
alg = "ES256"
rotation_period = "90d"
prepublish = "7d"
token_max_ttl = "5m"

[[rings]]
name = "{ring}"
alg = "ES256"
rotation_period = "90d"
prepublish = "7d"
token_max_ttl = "5m"

[[principals]]
name = "ci"
token_sha256 = "{hex}"
permissions = ["sign:request:*"]
{approvers}
[[groups]]
name = "managers"
members = ["ann", "bob", "cat"]

[[profiles]]
name = "release"
ring = "{ring}"
requesters = ["ci"]
approvers = "managers"
approvals_required = 2
subjects = ["*"]
"""
CI = Principal(name="ci", permissions=frozenset({"sign:request:*"}))


def approver(name: str) -> Principal:
    return Principal(name=name, permissions=frozenset({"sign:approve:*"}))


@dataclass
class Node:
    """One connection's worth of store, audit, approvals and code signing."""

    store: SqliteStore
    audit: AuditWriter
    codesign: CodeSigning
    runs: list[str]
    approvals: Approvals
    settings: Settings
    service: SignerService


async def make_node(
    path: Path, backend: Pkcs11Backend, ring: str, clock: MovingClock, *, start: bool
) -> Node:
    approvers = "".join(
        f'\n[[principals]]\nname = "{n}"\ntoken_sha256 = "{hashlib.sha256(n.encode()).hexdigest()}"'
        '\npermissions = ["sign:approve:*"]\n'
        for n in ("ann", "bob", "cat")
    )
    config = path / "signer.toml"
    config.write_text(
        CONFIG.format(ring=ring, hex=hashlib.sha256(b"ci").hexdigest(), approvers=approvers)
    )
    settings = load_settings(config, environ={"PIN": "x"})
    store = SqliteStore(path / "state.db")
    audit = AuditWriter(store, clock=clock)
    service = SignerService(settings, backend=backend, store=store, clock=clock, audit=audit)
    keeper = Keeper(service, audit, shared=False)
    approvals = Approvals(store, audit, clock=clock, ttl=TTL)
    codesign = CodeSigning(settings, service=service, approvals=approvals, audit=audit, clock=clock)
    runs: list[str] = []

    async def run(request: ApprovalRequest) -> Mapping[str, Any]:
        runs.append(request.id)
        return await codesign.run(request)

    approvals.register(OPERATION, run)
    await audit.start()
    if start:
        await keeper.start()
    else:
        for name in service.settings.rings:
            service.refresh(name.name, await store.keys(name.name))
    return Node(store, audit, codesign, runs, approvals, settings, service)


@pytest.fixture
async def nodes(
    tmp_path: Path, backend: Pkcs11Backend
) -> AsyncIterator[tuple[Node, Node, MovingClock]]:
    clock = MovingClock()
    ring = "cs" + new_key_id()[:12]
    first = await make_node(tmp_path, backend, ring, clock, start=True)
    second = await make_node(tmp_path, backend, ring, clock, start=False)
    yield first, second, clock
    for node in (first, second):
        await node.audit.aclose()
        await node.store.aclose()


def blob(n: int) -> dict[str, object]:
    digest = hashlib.sha256(str(n).encode()).hexdigest()
    return {
        "profile": "release",
        "kind": "blob",
        "subjects": [{"name": f"a-{n}.tgz", "digest": {"sha256": digest}}],
        "reason": "test",
    }


async def test_an_expired_request_reads_expired_and_never_signs(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    node, _, clock = nodes
    record, _ = await node.codesign.create(CI, parse_request(blob(1)))
    await node.codesign.vote(record.id, approver("ann"), Decision.APPROVE, "ok")
    clock.now += TTL
    with pytest.raises(ApprovalExpired):
        await node.codesign.vote(record.id, approver("bob"), Decision.APPROVE, "ok")
    expired, approval = await node.codesign.get(record.id)
    assert (expired.state, expired.outputs, node.runs) == (RequestState.EXPIRED, {}, [])
    assert approval is not None
    assert approval.state == "expired"
    assert [r.id for r, _ in await node.codesign.list(state="expired")] == [record.id]


async def test_a_kind_the_profile_no_longer_signs_is_not_signed_at_quorum(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    """Approved in part, then the operator narrows the profile's kinds and restarts: the last
    vote must not sign what the config now refuses."""
    node, _, clock = nodes
    record, _ = await node.codesign.create(CI, parse_request(blob(9)))
    await node.codesign.vote(record.id, approver("ann"), Decision.APPROVE, "ok")
    (profile,) = node.settings.profiles
    narrowed = replace(
        node.settings, profiles=(replace(profile, kinds=("container", "attestation")),)
    )
    restarted = CodeSigning(
        narrowed, service=node.service, approvals=node.approvals, audit=node.audit, clock=clock
    )
    node.approvals.register(OPERATION, restarted.run)
    with pytest.raises(KindNotSupported, match="no longer signs 'blob' requests"):
        await restarted.vote(record.id, approver("bob"), Decision.APPROVE, "ok")
    after, _ = await restarted.get(record.id)
    assert (after.state, after.outputs) == (RequestState.PENDING, {})
    assert "signing.sign" not in [r.action for r in await node.store.audit_records()]


async def test_a_resumed_run_returns_the_stored_outputs_without_signing_again(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    node, _, _ = nodes
    record, _ = await node.codesign.create(CI, parse_request(blob(2)))
    await node.codesign.vote(record.id, approver("ann"), Decision.APPROVE, "ok")
    signed, approval = await node.codesign.vote(record.id, approver("bob"), Decision.APPROVE, "")
    assert signed.state is RequestState.SIGNED
    assert signed.kind is Kind.BLOB
    assert approval is not None
    before = len(await node.store.audit_records())
    outcome = await node.codesign.run(approval)
    assert outcome["request"] == record.id
    again, _ = await node.codesign.get(record.id)
    assert again.outputs == signed.outputs
    actions = [r.action for r in (await node.store.audit_records())[before:]]
    assert "signing.sign" not in actions


async def test_racing_final_votes_on_two_connections_sign_once(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    first, second, _ = nodes
    record, _ = await first.codesign.create(CI, parse_request(blob(3)))
    await first.codesign.vote(record.id, approver("ann"), Decision.APPROVE, "ok")
    results = await asyncio.gather(
        first.codesign.vote(record.id, approver("bob"), Decision.APPROVE, "ok"),
        second.codesign.vote(record.id, approver("cat"), Decision.APPROVE, "ok"),
        return_exceptions=True,
    )
    assert len(first.runs) + len(second.runs) == 1, results
    final, _ = await first.codesign.get(record.id)
    assert final.state is RequestState.SIGNED
    signs = [r for r in await first.store.audit_records() if r.action == "signing.sign"]
    assert len(signs) == 2  # the bundle and the approval bundle, once each


async def signatures_of(node: Node, request_id: str) -> list[str]:
    return [
        str(r.details["output"])
        for r in await node.store.audit_records()
        if r.action == "signing.sign" and r.details["request"] == request_id
    ]


async def test_a_run_that_failed_at_quorum_is_retried_when_the_request_is_read(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    """The HSM is down at quorum; once it is back, a read signs the request, exactly once."""
    node, _, clock = nodes
    hsm_up = False

    async def run(request: ApprovalRequest) -> Mapping[str, Any]:
        if not hsm_up:
            raise HsmUnavailable("the HSM session is lost")
        return await node.codesign.run(request)

    node.approvals.register(OPERATION, run)
    record, _ = await node.codesign.create(CI, parse_request(blob(4)))
    await node.codesign.vote(record.id, approver("ann"), Decision.APPROVE, "ok")
    with pytest.raises(HsmUnavailable):
        await node.codesign.vote(record.id, approver("bob"), Decision.APPROVE, "ok")
    clock.now += RETRY_AFTER_S
    still, approval = await node.codesign.get(record.id)  # the retry fails: the GET answers
    assert (still.state, approval.state if approval else None) == ("pending", "approved")
    hsm_up = True
    soon, _ = await node.codesign.get(record.id)
    assert soon.state is RequestState.PENDING  # retries wait RETRY_AFTER_S between attempts
    clock.now += RETRY_AFTER_S
    signed, approval = await node.codesign.get(record.id)
    assert signed.state is RequestState.SIGNED
    assert signed.outputs
    assert approval is not None
    assert approval.state == "executed"
    clock.now += RETRY_AFTER_S
    await node.codesign.get(record.id)
    assert sorted(await signatures_of(node, record.id)) == ["approval_bundle", "bundle"]


async def test_a_failed_create_leaves_no_approval_behind(
    nodes: tuple[Node, Node, MovingClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request and its approval are one write: when it fails, approvers see nothing to
    vote on, and the audit log records neither."""
    node, _, _ = nodes
    before = await node.store.audit_records()

    async def unavailable(record: SigningRequest, **fields: Any) -> None:
        raise StoreUnavailable("the store went away")

    monkeypatch.setattr(node.store, "insert_signing_request", unavailable)
    with pytest.raises(StoreUnavailable):
        await node.codesign.create(CI, parse_request(blob(5)))
    assert await node.store.approvals() == []
    assert await node.store.signing_requests() == []
    assert await node.store.audit_records() == before


async def test_a_created_request_and_its_approval_are_linked_and_pending(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    node, _, _ = nodes
    record, approval = await node.codesign.create(CI, parse_request(blob(5)))
    assert record.approval_id == approval.id
    assert approval.target == record.id
    assert await node.store.get_approval(approval.id) == approval
    fresh, _ = await node.codesign.get(record.id)
    assert fresh.state is RequestState.PENDING
    actions = [r.action for r in await node.store.audit_records()][-2:]
    assert actions == ["approval.create", "signing.request"]


async def test_an_unreachable_quorum_is_refused_before_anything_is_written(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    """A requester in its own approver group does not count towards quorum (409, no writes)."""
    node, _, clock = nodes
    (group,) = node.settings.groups
    (profile,) = node.settings.profiles
    settings = replace(
        node.settings,
        groups=(replace(group, members=("ann", "bob", "ci")),),
        profiles=(replace(profile, approvals_required=3),),
    )
    codesign = CodeSigning(
        settings, service=node.service, approvals=node.approvals, audit=node.audit, clock=clock
    )
    with pytest.raises(QuorumUnreachable, match="only 2 members besides the requester 'ci'"):
        await codesign.create(CI, parse_request(blob(6)))
    assert await node.store.signing_requests() == []
    assert await node.store.approvals() == []
    (refusal,) = [r for r in await node.store.audit_records() if r.action == "signing.request"]
    assert (refusal.outcome, refusal.details["code"]) == ("denied", "quorum_unreachable")


async def test_voting_on_a_request_one_may_not_see_is_a_404_like_a_missing_one(
    nodes: tuple[Node, Node, MovingClock],
) -> None:
    node, _, _ = nodes
    record, _ = await node.codesign.create(CI, parse_request(blob(7)))
    eve = Principal(name="eve", permissions=frozenset({"jwt:sign:*"}))
    with pytest.raises(UnknownSigningRequest) as hidden:
        await node.codesign.vote(record.id, eve, Decision.APPROVE, "")
    with pytest.raises(UnknownSigningRequest) as missing:
        await node.codesign.vote("sr_missing", eve, Decision.APPROVE, "")
    assert hidden.value.detail == missing.value.detail.replace("sr_missing", record.id)
