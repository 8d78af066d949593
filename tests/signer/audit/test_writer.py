"""The audit writer: group commits, the sink, checkpoints, and what it reads back from the store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

from jwks.records import KeyState
from jwks.thumbprint import KeyId
from signer.audit import writer as writer_module
from signer.audit.chain import CHECKPOINT_ACTION, AuditEntry, AuditRecord, link
from signer.audit.chaincheck import verify_chain
from signer.audit.writer import AuditWriter, entry
from signer.errors import KeyNotActive, StoreUnavailable
from signer.store.base import KeyUpdate
from signer.store.sqlite import SqliteStore
from tests.fakes import MovingClock
from tests.signer.store.test_conformance import record

T0 = 1_790_000_000.0


class CountingStore(SqliteStore):
    """A real SQLite store that counts reads of the chain past one record (the writer reads
    back the last record it wrote before each checkpoint, to see that it is unchanged)."""

    reads = 0

    async def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        if limit != 1:
            self.reads += 1
        return await super().audit_records(after=after, limit=limit)


async def fake_sign(_payload: bytes) -> bytes:
    return bytes(64)  # the writer only needs an r || s of the right size


def items(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"actor": "bench", "action": "jwt.sign", "target": "ring/default", "details": {"n": i}}
        for i in range(start, start + n)
    ]


async def test_own_batches_and_checkpoints_reach_the_sink_without_reading_the_store_back(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "state.db")
    sink = tmp_path / "audit.jsonl"
    writer = AuditWriter(
        store,
        clock=MovingClock(T0),
        sink=sink,
        checkpoint_kid="k",
        checkpoint_sign=fake_sign,
        checkpoint_every=100,
    )
    await writer.start()
    for start in range(0, 450, 50):
        await writer.record_many(items(50, start))
    await writer.aclose()

    lines = sink.read_text(encoding="utf-8").splitlines()
    stored = await store.audit_raw()
    await store.aclose()
    assert [json.loads(line) for line in lines] == [json.loads(raw) for raw in stored]
    assert sum(json.loads(line)["action"] == CHECKPOINT_ACTION for line in lines) >= 4
    assert verify_chain(lines).ok
    assert store.reads == 0


async def test_without_a_sink_records_written_elsewhere_are_not_read_back(tmp_path: Path) -> None:
    """The writer still learns the true head (its checkpoint covers the other record)."""
    store = CountingStore(tmp_path / "state.db")
    clock = MovingClock(T0)
    writer = AuditWriter(store, clock=clock, checkpoint_kid="k", checkpoint_sign=fake_sign)
    await writer.start()
    await writer.record_many(items(3))
    await store.append_audit([entry(clock, actor="admin", action="key.revoke", target="k1")])
    await writer.record_many(items(2, 3))

    checkpoint = await writer.checkpoint()

    await writer.aclose()
    await store.aclose()
    assert checkpoint is not None
    assert checkpoint.details["seq"] == 6  # 3 + the revoke + 2
    assert store.reads == 0


async def test_one_callers_entries_over_several_commits_come_back_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAX_BATCH", 4)
    store = SqliteStore(tmp_path / "state.db")
    writer = AuditWriter(store, clock=MovingClock(T0))
    await writer.start()

    records = await writer.record_many(items(10))
    await writer.aclose()
    await store.aclose()

    assert [r.details["n"] for r in records] == list(range(10))
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + 10))


class FailingStore(SqliteStore):
    """A real SQLite store whose audit commits fail."""

    async def append_audit(
        self, entries: Sequence[AuditEntry], *, require_active: Collection[KeyId] = ()
    ) -> list[AuditRecord]:
        raise OSError("disk full")


async def test_every_caller_in_a_failed_commit_hears_of_it(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "state.db")
    writer = AuditWriter(store, clock=MovingClock(T0))
    await writer.start()

    results = await asyncio.gather(
        writer.record_many(items(2)), writer.record(**items(1)[0]), return_exceptions=True
    )
    await writer.aclose()
    await store.aclose()

    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert all("disk full" in str(r) for r in results)


async def test_a_sink_that_cannot_be_written_never_stops_the_commits(tmp_path: Path) -> None:
    """A full disk or a missing directory under the sink is logged; signing stays audited."""
    store = SqliteStore(tmp_path / "state.db")
    writer = AuditWriter(store, clock=MovingClock(T0), sink=tmp_path / "missing" / "audit.jsonl")
    await writer.start()
    first = await writer.record_many(items(2))
    second = await writer.record_many(items(2, 2))
    await writer.aclose()
    await store.aclose()
    assert [r.seq for r in first + second] == [1, 2, 3, 4]


async def test_callers_waiting_when_the_writer_is_cancelled_hear_of_it(tmp_path: Path) -> None:
    """A batch cut off mid-commit and the entries queued behind it all fail: none of their
    callers may hand out what they were about to audit."""
    store = SqliteStore(tmp_path / "state.db")
    writer = AuditWriter(store, clock=MovingClock(T0))
    await writer.start()
    committing, release = asyncio.Event(), asyncio.Event()
    append = store.append_audit

    async def slow_append(
        entries: Sequence[AuditEntry], *, require_active: Collection[KeyId] = ()
    ) -> list[AuditRecord]:
        committing.set()
        await release.wait()
        return await append(entries, require_active=require_active)

    store.append_audit = slow_append  # type: ignore[method-assign]
    in_flight = asyncio.create_task(writer.record_many(items(1)))
    await committing.wait()
    queued = asyncio.create_task(writer.record_many(items(1, 1)))
    await asyncio.sleep(0)
    assert writer._task is not None
    writer._task.cancel()
    for caller in (in_flight, queued):
        with pytest.raises(StoreUnavailable):
            await caller
    await store.aclose()


async def test_a_follower_neither_streams_nor_signs_at_shutdown(tmp_path: Path) -> None:
    """Only the publishing worker writes the sink (two writing it duplicated every record)."""
    store = SqliteStore(tmp_path / "state.db")
    sink = tmp_path / "audit.jsonl"
    writer = AuditWriter(
        store, clock=MovingClock(T0), sink=sink, checkpoint_kid="k", checkpoint_sign=fake_sign
    )
    writer.publish_when(lambda: False)
    await writer.start()
    await writer.record_many(items(3))
    assert await writer.checkpoint() is None
    await writer.aclose()
    await store.aclose()
    assert not sink.exists() or sink.read_text(encoding="utf-8") == ""


async def test_a_record_cut_short_in_the_sink_does_not_swallow_the_next(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    sink = tmp_path / "audit.jsonl"
    first = AuditWriter(store, clock=MovingClock(T0), sink=sink)
    await first.start()
    await first.record_many(items(2))
    await first.aclose()
    with sink.open("a", encoding="utf-8") as handle:
        handle.write('{"seq": 3, "ti')  # a crash in the middle of a line
    second = AuditWriter(store, clock=MovingClock(T0), sink=sink)
    await second.start()
    await second.record_many(items(1, 2))
    await second.aclose()
    await store.aclose()
    lines = sink.read_text(encoding="utf-8").split("\n")
    assert lines[2] == '{"seq": 3, "ti'
    assert [json.loads(line)["seq"] for line in lines if line.endswith("}")] == [1, 2, 3]


def test_the_last_record_is_found_however_long_it_is(tmp_path: Path) -> None:
    sink = tmp_path / "audit.jsonl"
    long_line = json.dumps(
        {"seq": 7, "details": {"pad": "x" * (3 * writer_module.SINK_TAIL_BYTES)}}
    )
    sink.write_text('{"seq": 6}\n' + long_line + "\n", encoding="utf-8")
    assert writer_module._last_seq_in(sink) == 7


async def test_no_checkpoint_signs_over_a_record_changed_after_it_was_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rewriting a stored record with recomputed hashes keeps the chain whole; the writer
    still knows the hash it wrote, and refuses to sign the rewrite."""
    store = SqliteStore(tmp_path / "state.db")
    clock = MovingClock(T0)
    writer = AuditWriter(store, clock=clock, checkpoint_kid="k", checkpoint_sign=fake_sign)
    await writer.start()
    records = await writer.record_many(items(3))
    last = records[-1]
    forged = link(
        AuditEntry(
            time=last.time,
            actor="mallory",
            action=last.action,
            target=last.target,
            outcome=last.outcome,
            details=last.details,
        ),
        seq=last.seq,
        prev=last.prev,
    )
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute(
            "UPDATE audit SET hash = ?, record = ? WHERE seq = ?",
            (forged.hash, forged.line(), last.seq),
        )
    assert await writer.checkpoint() is None
    assert "changed after record 3 was written" in caplog.text
    actions = [r.action for r in await store.audit_records()]
    await writer.aclose()
    await store.aclose()
    assert CHECKPOINT_ACTION not in actions


async def test_a_call_with_one_bad_item_queues_none_of_its_items(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    writer = AuditWriter(store, clock=MovingClock(T0))
    await writer.start()
    bad: list[dict[str, object]] = [
        *items(1),
        {"actor": "x", "action": "jwt.sign", "target": "t", "details": {1.5}},
    ]
    with pytest.raises((TypeError, ValueError)):
        await writer.record_many(bad)
    (record,) = await writer.record_many(items(1, 5))
    await writer.aclose()
    await store.aclose()
    assert record.seq == 1  # the good item of the refused call was never committed


async def test_entries_of_a_key_no_longer_active_fail_and_the_rest_commit(tmp_path: Path) -> None:
    """One commit carries several callers' records; those whose signing key was revoked
    meanwhile are refused (their tokens never leave), the others are committed."""
    store = SqliteStore(tmp_path / "state.db")
    revoked, live = record("k1"), record("k2", ring="r2")
    await store.insert_key(revoked)
    await store.insert_key(live)
    gone = revoked.with_state(KeyState.REVOKED, 200, revoke_reason="x")
    await store.update_keys([KeyUpdate(record=gone, expected=KeyState.ACTIVE)])
    writer = AuditWriter(store, clock=MovingClock(T0))
    await writer.start()
    results = await asyncio.gather(
        writer.record_many(items(2), active=revoked.kid),
        writer.record_many(items(1, 2), active=live.kid),
        return_exceptions=True,
    )
    await writer.aclose()
    stored = await store.audit_records()
    await store.aclose()
    assert isinstance(results[0], KeyNotActive)
    assert isinstance(results[1], list)
    assert [r.details["n"] for r in stored] == [2]
