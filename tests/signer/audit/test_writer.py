"""The audit writer: group commits, the sink, checkpoints, and what it reads back from the store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from signer.audit import writer as writer_module
from signer.audit.chain import CHECKPOINT_ACTION, AuditEntry, AuditRecord
from signer.audit.chaincheck import verify_chain
from signer.audit.writer import AuditWriter, entry
from signer.errors import StoreUnavailable
from signer.store.sqlite import SqliteStore
from tests.fakes import MovingClock

T0 = 1_790_000_000.0


class CountingStore(SqliteStore):
    """A real SQLite store that counts full reads of the chain."""

    reads = 0

    async def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
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

    async def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
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
