"""The code-signing shell on the real SoftHSM token and SQLite, with a moved clock: expiry,
resumed runs and racing final votes across two connections."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from signer.approvals.rules import ApprovalExpired, ApprovalRequest, Decision
from signer.approvals.shell import Approvals
from signer.audit.writer import AuditWriter
from signer.auth import Principal
from signer.codesign.records import Kind, RequestState
from signer.codesign.requests import parse_request
from signer.codesign.shell import OPERATION, CodeSigning
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.keeper import Keeper
from signer.service import SignerService
from signer.settings import load_settings
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
    return Node(store, audit, codesign, runs)


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
