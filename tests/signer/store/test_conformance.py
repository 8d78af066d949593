"""The ``StateStore`` contract, run against every adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from pathlib import Path

import pytest

from jwks.algorithms import Alg
from jwks.records import KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId
from signer.approvals.rules import Decision, Vote, vote
from signer.audit.chain import AuditEntry
from signer.audit.chaincheck import verify_chain
from signer.errors import KeyNotActive
from signer.store.base import (
    NO_ANCHOR,
    AuditAnchor,
    Fence,
    FencedOut,
    KeysNotActive,
    KeyUpdate,
    StaleWrite,
    StateStore,
)
from signer.store.sqlite import SqliteStore
from tests.signer.store.conftest import Reopen, approval_request

ACTIVE, PENDING = KeyState.ACTIVE, KeyState.PENDING


def record(
    kid: str, state: KeyState = KeyState.ACTIVE, ring: str = "r", at: int = 100
) -> KeyRecord:
    return KeyRecord(
        kid=KeyId(kid),
        ring=RingName(ring),
        alg=Alg.ES256,
        key_id=kid.encode().hex(),
        label=f"signer/{ring}/{kid}",
        jwk={"kty": "EC", "crv": "P-256", "x": "x-" + kid, "y": "y-" + kid},
        state=state,
        created_at=at,
        published_at=at,
        activated_at=at if state is KeyState.ACTIVE else None,
    )


async def test_inserted_record_reads_back_equal(store: StateStore) -> None:
    original = record("k1")
    await store.insert_key(original)
    assert await store.get_key(KeyId("k1")) == original
    assert await store.keys("r") == [original]
    assert await store.get_key(KeyId("nope")) is None


async def test_keys_are_listed_oldest_first_and_by_ring(store: StateStore) -> None:
    await store.insert_key(record("b", KeyState.PENDING, at=200))
    await store.insert_key(record("a", KeyState.ACTIVE, at=100))
    await store.insert_key(record("c", KeyState.ACTIVE, ring="other"))
    assert [r.kid for r in await store.keys("r")] == ["b", "a"]
    assert [r.kid for r in await store.keys()] == ["b", "a", "c"]


async def test_duplicate_kid_is_refused(store: StateStore) -> None:
    await store.insert_key(record("k1"))
    with pytest.raises(StaleWrite):
        await store.insert_key(record("k1", KeyState.PENDING))


async def test_second_active_key_in_a_ring_is_refused(store: StateStore) -> None:
    """DESIGN.md: exactly one active key per ring, even against a buggy writer."""
    await store.insert_key(record("k1"))
    with pytest.raises(StaleWrite):
        await store.insert_key(record("k2"))


async def test_update_is_compare_and_set_on_state(store: StateStore) -> None:
    active = record("k1")
    pending = record("k2", KeyState.PENDING)
    await store.insert_key(active)
    await store.insert_key(pending)
    swap = [
        KeyUpdate(record=active.with_state(KeyState.DRAINING, 500), expected=KeyState.ACTIVE),
        KeyUpdate(record=pending.with_state(KeyState.ACTIVE, 500), expected=KeyState.PENDING),
    ]
    await store.update_keys(swap)
    assert (await store.get_key(KeyId("k1"))) == swap[0].record
    assert (await store.get_key(KeyId("k2"))) == swap[1].record
    with pytest.raises(StaleWrite):
        await store.update_keys(swap)


async def test_failed_update_changes_nothing(store: StateStore) -> None:
    """All-or-nothing: one stale item rolls the whole batch back."""
    k1 = record("k1")
    k2 = record("k2", KeyState.PENDING)
    await store.insert_key(k1)
    await store.insert_key(k2)
    batch = [
        KeyUpdate(record=k1.with_state(KeyState.DRAINING, 9), expected=KeyState.ACTIVE),
        KeyUpdate(record=k2.with_state(KeyState.DRAINING, 9), expected=KeyState.ACTIVE),
    ]
    with pytest.raises(StaleWrite):
        await store.update_keys(batch)
    assert await store.get_key(KeyId("k1")) == k1
    assert await store.get_key(KeyId("k2")) == k2


async def test_watermark_only_rises(store: StateStore) -> None:
    await store.insert_key(record("k1"))
    assert await store.raise_watermark(KeyId("k1"), 1000) == 1000
    assert await store.raise_watermark(KeyId("k1"), 900) == 1000
    assert await store.raise_watermark(KeyId("k1"), 1100) == 1100
    stored = await store.get_key(KeyId("k1"))
    assert stored is not None
    assert stored.exp_watermark == 1100


async def test_watermark_refused_for_a_key_that_is_not_active(store: StateStore) -> None:
    """A revoked or drained key can never reserve another exp (it must not sign)."""
    await store.insert_key(record("k1", KeyState.PENDING))
    with pytest.raises(KeyNotActive):
        await store.raise_watermark(KeyId("k1"), 1000)


async def test_concurrent_watermarks_keep_the_maximum(store: StateStore) -> None:
    await store.insert_key(record("k1"))
    await asyncio.gather(*(store.raise_watermark(KeyId("k1"), e) for e in range(1, 200)))
    stored = await store.get_key(KeyId("k1"))
    assert stored is not None
    assert stored.exp_watermark == 199


async def test_revoke_reason_and_timestamps_persist(store: StateStore) -> None:
    k1 = record("k1")
    await store.insert_key(k1)
    revoked = k1.with_state(KeyState.REVOKED, 777, revoke_reason="leaked")
    await store.update_keys([KeyUpdate(record=revoked, expected=KeyState.ACTIVE)])
    stored = await store.get_key(KeyId("k1"))
    assert stored == dataclasses.replace(
        k1, state=KeyState.REVOKED, revoked_at=777, revoke_reason="leaked"
    )


async def test_ping_answers(store: StateStore) -> None:
    await store.aping()


def audit_entry(action: str, n: int = 0) -> AuditEntry:
    return AuditEntry(
        time="2026-11-29T01:02:03.000000Z",
        actor="t",
        action=action,
        target=f"x/{n}",
        outcome="success",
        details={"n": n},
    )


async def test_audit_commits_only_while_the_keys_it_requires_are_active(
    store: StateStore,
) -> None:
    """The records of tokens signed by a key revoked meanwhile (by any process) never commit."""
    await store.insert_key(record("k1"))
    await store.insert_key(record("k2", ring="r2"))
    committed = await store.append_audit([audit_entry("jwt.sign", 1)], require_active=[KeyId("k1")])
    assert [r.seq for r in committed] == [1]
    revoked = record("k1").with_state(KeyState.REVOKED, 200, revoke_reason="x")
    await store.update_keys([KeyUpdate(record=revoked, expected=KeyState.ACTIVE)])
    with pytest.raises(KeysNotActive) as refused:
        await store.append_audit(
            [audit_entry("jwt.sign", 2), audit_entry("jwt.sign", 3)],
            require_active=[KeyId("k1"), KeyId("k2"), KeyId("missing")],
        )
    assert refused.value.kids == {"k1", "missing"}
    assert [r.seq for r in await store.audit_records()] == [1]


async def test_audit_appends_chain_in_order_across_writes(store: StateStore) -> None:
    first = await store.append_audit([audit_entry("a", 1), audit_entry("b", 2)])
    await store.insert_key(record("k1"), audit=[audit_entry("key.generate", 3)])
    await store.set_meta("m", "v", audit=[audit_entry("audit.checkpoint", 4)])
    records = await store.audit_records()
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert records[:2] == first
    assert all(b.prev == a.hash for a, b in itertools.pairwise(records))
    assert verify_chain(await store.audit_raw()).ok
    assert (await store.audit_last()) == records[-1]
    assert (await store.audit_last(action="b")) == records[1]
    assert await store.audit_records(after=2, limit=1) == records[2:3]
    assert await store.get_meta("m") == "v"


async def test_a_pruned_log_starts_after_its_anchor_and_chains_on(store: StateStore) -> None:
    """``prune_audit``: the records up to the cut go, reads start after it, and the chain goes
    on from the head as before (the anchor links the first kept record)."""
    assert await store.audit_anchor() == NO_ANCHOR
    kept = await store.append_audit([audit_entry(f"a{n}", n) for n in range(1, 6)])
    cut = kept[2]  # seq 3
    (pruned,) = await store.prune_audit(
        through=3, expected_hash=cut.hash, audit=[audit_entry("audit.prune", 6)]
    )
    assert await store.audit_anchor() == AuditAnchor(seq=3, hash=cut.hash)
    assert (pruned.seq, pruned.prev) == (6, kept[-1].hash)
    records = await store.audit_records()
    assert [r.seq for r in records] == [4, 5, 6]
    assert await store.audit_records(after=0, limit=1) == records[:1]
    assert await store.audit_records(after=4, limit=1) == records[1:2]
    assert await store.audit_records(after=6) == []
    assert verify_chain(await store.audit_raw(), start_seq=4, start_prev=cut.hash).ok
    assert await store.audit_raw(after=5) == [pruned.line()]
    assert await store.audit_last() == pruned
    assert await store.audit_last(action="a4") == records[0]
    assert await store.audit_last(action="a2") is None  # pruned
    (after,) = await store.append_audit([audit_entry("a7", 7)])
    assert (after.seq, after.prev) == (7, pruned.hash)


async def test_a_prune_longer_than_one_step_removes_every_record_before_the_cut(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records go a few per transaction (a serving signer's commits never wait long)."""
    monkeypatch.setattr("signer.store.sqlite.PRUNE_ROWS_PER_DELETE", 3)
    monkeypatch.setattr("signer.store.redis.PRUNE_RECORDS_PER_TRIM", 3)
    kept = await store.append_audit([audit_entry(f"a{n}", n) for n in range(1, 13)])
    await store.prune_audit(through=10, expected_hash=kept[9].hash)
    assert [r.seq for r in await store.audit_records()] == [11, 12]
    assert await store.audit_export() == (
        AuditAnchor(seq=10, hash=kept[9].hash),
        [kept[10].line(), kept[11].line()],
    )
    (later,) = await store.prune_audit(
        through=11, expected_hash=kept[10].hash, audit=[audit_entry("p")]
    )
    assert await store.audit_export(after=5) == (
        AuditAnchor(seq=11, hash=kept[10].hash),
        [kept[11].line(), later.line()],
    )
    assert await store.audit_records(after=2**62) == []  # GET /v1/audit?after= takes up to it


async def test_a_prune_refused_changes_nothing(store: StateStore) -> None:
    """The cut must be stored with the hash the caller verified, and must not be the head."""
    kept = await store.append_audit([audit_entry(f"a{n}", n) for n in range(1, 4)])
    attempts = [
        (2, kept[0].hash),  # another record's hash
        (9, kept[0].hash),  # no such record
        (3, kept[2].hash),  # the head: nothing would remain
    ]
    for through, expected in attempts:
        with pytest.raises(StaleWrite):
            await store.prune_audit(
                through=through, expected_hash=expected, audit=[audit_entry("audit.prune")]
            )
    assert await store.audit_records() == kept
    assert await store.audit_anchor() == NO_ANCHOR
    await store.prune_audit(through=1, expected_hash=kept[0].hash)
    with pytest.raises(StaleWrite):  # already pruned
        await store.prune_audit(through=1, expected_hash=kept[0].hash)
    assert [r.seq for r in await store.audit_records()] == [2, 3]


async def test_a_failed_key_write_appends_no_audit_record(store: StateStore) -> None:
    """Nothing half-applied: the change and its record commit together or not at all."""
    await store.insert_key(record("k1"))
    with pytest.raises(StaleWrite):
        await store.insert_key(record("k1"), audit=[audit_entry("key.generate")])
    assert await store.audit_records() == []


async def test_approval_updates_are_compare_and_set_on_version(store: StateStore) -> None:
    request = approval_request()
    await store.insert_approval(request)
    voted = vote(request, Vote(approver="a", decision=Decision.APPROVE, comment="", at=101), 101)
    await store.update_approval(voted.request, expected_version=request.version)
    with pytest.raises(StaleWrite):
        await store.update_approval(voted.request, expected_version=request.version)
    assert await store.get_approval("apr_1") == voted.request
    assert [a.id for a in await store.approvals(state="approved")] == ["apr_1"]
    assert await store.approvals(state="pending") == []


async def test_update_never_lowers_the_watermark(store: StateStore) -> None:
    """A transition written from a record read before a signature keeps that signature's exp."""
    k1 = record("k1")
    await store.insert_key(k1)
    await store.raise_watermark(KeyId("k1"), 1000)
    stale = k1.with_state(KeyState.DRAINING, 900)  # read before the raise: no watermark
    await store.update_keys([KeyUpdate(record=stale, expected=KeyState.ACTIVE)])
    assert await store.get_key(KeyId("k1")) == dataclasses.replace(stale, exp_watermark=1000)


async def test_racing_activations_leave_one_active_key(reopen: Reopen) -> None:
    """Two replicas promote different pending keys at once: exactly one commits."""
    first, second = await reopen(), await reopen()
    k1, k2 = record("k1", KeyState.PENDING), record("k2", KeyState.PENDING)
    await first.insert_key(k1)
    await first.insert_key(k2)
    results = await asyncio.gather(
        first.update_keys([KeyUpdate(record=k1.with_state(ACTIVE, 5), expected=PENDING)]),
        second.update_keys([KeyUpdate(record=k2.with_state(ACTIVE, 5), expected=PENDING)]),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "StaleWrite"]
    assert [r.state for r in await first.keys("r")].count(ACTIVE) == 1


async def test_racing_approval_updates_at_one_version_let_one_win(reopen: Reopen) -> None:
    """Execute-once across replicas: two writers at the same version, one commit."""
    first, second = await reopen(), await reopen()
    request = approval_request()
    await first.insert_approval(request)
    votes = [
        vote(request, Vote(approver=who, decision=Decision.APPROVE, comment="", at=101), 101)
        for who in ("a", "b")
    ]
    results = await asyncio.gather(
        first.update_approval(votes[0].request, expected_version=request.version),
        second.update_approval(votes[1].request, expected_version=request.version),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "StaleWrite"]
    winner = votes[results.index(None)].request
    assert await second.get_approval("apr_1") == winner


async def test_concurrent_audit_appends_from_two_handles_form_one_chain(reopen: Reopen) -> None:
    """One chain, no forks, whichever process appends (and key writes append in between)."""
    first, second = await reopen(), await reopen()

    async def append(store: StateStore, name: str) -> None:
        for n in range(15):
            await store.append_audit([audit_entry(name, n), audit_entry(name, n + 100)])

    await asyncio.gather(
        append(first, "one"),
        append(second, "two"),
        first.insert_key(record("k1"), audit=[audit_entry("key.generate")]),
        second.set_meta("m", "v", audit=[audit_entry("policy")]),
    )
    raw = await first.audit_raw()
    report = verify_chain(raw)
    assert report.ok, report.first_bad
    assert report.count == 62
    assert [r.seq for r in await second.audit_records()] == list(range(1, 63))


async def test_a_prune_racing_appends_from_another_handle_keeps_one_chain(reopen: Reopen) -> None:
    """``signer audit prune`` runs beside a serving signer: its cut never forks the chain."""
    first, second = await reopen(), await reopen()
    base = await first.append_audit([audit_entry("a", n) for n in range(10)])

    async def append() -> None:
        for n in range(20):
            await second.append_audit([audit_entry("b", n)])

    await asyncio.gather(
        append(), first.prune_audit(through=5, expected_hash=base[4].hash, audit=[audit_entry("p")])
    )
    report = verify_chain(await second.audit_raw(), start_seq=6, start_prev=base[4].hash)
    assert report.ok, report.first_bad
    assert report.count == 5 + 20 + 1
    assert await second.audit_anchor() == AuditAnchor(seq=5, hash=base[4].hash)


async def test_lease_epoch_holds_on_renewal_and_another_owner_waits(store: StateStore) -> None:
    now = time.time()
    first = await store.try_lease("lead", "a", ttl=10, now=now)
    assert first is not None
    assert await store.try_lease("lead", "a", ttl=10, now=now + 1) == first  # a renewal
    assert await store.try_lease("lead", "b", ttl=10, now=now + 2) is None  # held by a
    fence = Fence(name="lead", owner="a", epoch=first)
    await store.insert_key(record("k1", KeyState.PENDING), fence=fence)


async def test_write_at_a_stale_epoch_is_refused_after_a_takeover(store: StateStore) -> None:
    """A paused former leader wakes up and writes: refused, nothing applied or audited."""
    old = await store.try_lease("lead", "a", ttl=0.2, now=time.time())
    assert old is not None
    pending = record("k1", KeyState.PENDING)
    await store.insert_key(pending)
    await lease_lapses(store, "lead", "a", old)
    new = await store.try_lease("lead", "b", ttl=10, now=time.time() + 1)
    assert new == old + 1
    stale = Fence(name="lead", owner="a", epoch=old)
    update = KeyUpdate(record=pending.with_state(ACTIVE, 9), expected=PENDING)
    with pytest.raises(FencedOut):
        await store.update_keys([update], audit=[audit_entry("key.activate")], fence=stale)
    with pytest.raises(FencedOut):
        await store.insert_key(record("k2", KeyState.PENDING), fence=stale)
    assert await store.keys("r") == [pending]
    assert await store.audit_records() == []
    await store.update_keys([update], fence=Fence(name="lead", owner="b", epoch=new))
    assert await store.try_lease("lead", "a", ttl=10, now=time.time()) is None


async def test_write_under_an_expired_lease_is_refused(store: StateStore) -> None:
    """Expired but not yet taken over: still refused, then the same owner retakes the epoch."""
    epoch = await store.try_lease("lead", "a", ttl=0.2, now=time.time())
    assert epoch is not None
    await lease_lapses(store, "lead", "a", epoch)
    assert await store.try_lease("lead", "a", ttl=10, now=time.time() + 1) == epoch


async def lease_lapses(store: StateStore, name: str, owner: str, epoch: int) -> None:
    """Wait (real time: Redis expires leases by its own clock) until a fenced write is refused."""
    fence = Fence(name=name, owner=owner, epoch=epoch)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            await store.update_keys([], fence=fence)
        except FencedOut:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the lease never lapsed")


async def test_sqlite_has_no_change_feed_and_ends_it_on_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    changes = store.watch_changes()
    waiting = asyncio.ensure_future(anext(changes, None))
    await store.insert_key(record("k1"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await store.aclose()
    assert await waiting is None
