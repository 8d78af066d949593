"""The audit writer: group commit for the hot path, a JSON Lines sink, signed checkpoints.

``record()`` queues an entry and returns once the batch holding it is committed (fsync'd by the
store): a caller that awaits it never acts before its record is durable. Entries queued while a
batch is being written form the next batch, so under load one commit carries many records.

Key events and approvals are written by the store together with the change they describe (one
transaction); this writer only streams those to the sink and covers them with checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jwks.thumbprint import KeyId
from signer.audit.chain import (
    CHECKPOINT_ACTION,
    AuditEntry,
    AuditRecord,
    checkpoint_entry,
    checkpoint_payload,
    format_time,
)
from signer.errors import KeyNotActive, SignerError, StoreUnavailable
from signer.store.base import KeysNotActive, StateStore
from signer.tickets import Ticket

log = logging.getLogger("signer.audit")

MAX_BATCH = 1000
CHECKPOINT_EVERY_RECORDS = 1000
CHECKPOINT_EVERY_SECONDS = 60.0

Signer = Callable[[bytes], Awaitable[bytes]]


def entry(
    clock: Callable[[], float],
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """An entry stamped with the clock's time."""
    return AuditEntry(
        time=format_time(clock()),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=details or {},  # AuditEntry keeps a checked private copy
    )


class _Queued(NamedTuple):
    """An entry waiting for its commit, and where its record goes."""

    entry: AuditEntry
    ticket: Ticket[AuditRecord]
    place: int  # its index in the ticket
    active: KeyId | None  # the key that must still be active when it commits


class AuditWriter:
    """Queues entries, commits them in batches, streams and checkpoints what is committed."""

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], float],
        sink: Path | None = None,
        checkpoint_kid: str | None = None,
        checkpoint_sign: Signer | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY_RECORDS,
        checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self._on_commit = on_commit
        # With several workers, only the lifecycle leader streams and checkpoints.
        self._publishing: Callable[[], bool] = lambda: True
        self._was_publishing = True
        self._store = store
        self._clock = clock
        self._sink_path = sink
        self._kid = checkpoint_kid
        self._sign = checkpoint_sign
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        # Each entry with its caller's ticket, its place in it (``signer.tickets``) and the key
        # that must still be active when it commits, if any.
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._streamed = 0  # last seq written to the sink
        self._signed_seq = 0  # last seq covered by a checkpoint
        self._signed_at = 0.0
        self._head: AuditRecord | None = None
        self._committed: list[AuditRecord] = []  # our batches since the last catch-up
        self._own_head: AuditRecord | None = None  # the last record committed here
        self._elsewhere = False  # notify()'d of records committed by others since then
        # One catch-up at a time: the writer's loop and checkpoint() must not both stream the
        # same records, nor one return before the other has noted the head.
        self._catching_up = asyncio.Lock()
        self._stopping = False

    def publish_when(self, predicate: Callable[[], bool]) -> None:
        """Stream to the sink and sign checkpoints only while ``predicate()`` holds."""
        self._publishing = predicate

    def use_checkpoint_key(self, kid: str, sign: Signer) -> None:
        """Sign checkpoints with the HSM audit key ``kid``."""
        self._kid = kid
        self._sign = sign

    @property
    def depth(self) -> int:
        """Entries waiting for the next commit."""
        return len(self._queue)

    async def start(self) -> None:
        """Resume the sink and checkpoint positions and start committing."""
        head = await self._store.audit_last()
        self._head = head
        self._streamed = head.seq if head is not None else 0
        if self._sink_path is not None:
            self._streamed = min(self._streamed, _resume_sink(self._sink_path))
        checkpoint = await self._store.audit_last(action=CHECKPOINT_ACTION)
        signed = None if checkpoint is None else checkpoint.details.get("seq")
        self._signed_seq = signed if isinstance(signed, int) else 0
        self._signed_at = self._clock()
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        self.notify()

    def make(self, **fields: Any) -> AuditEntry:
        """An entry stamped now (for writes the store commits with a change)."""
        return entry(self._clock, **fields)

    async def record(self, **fields: Any) -> AuditRecord:
        """Append one entry; return once it is durable."""
        (record,) = await self.record_many([fields])
        return record

    async def record_many(
        self, items: Sequence[Mapping[str, Any]], *, active: KeyId | None = None
    ) -> list[AuditRecord]:
        """Append one entry per item of fields, in order; return once all are durable.

        ``active``: the key that signed what these entries record. They commit only while it
        is active, checked in the commit's own transaction; if it no longer is (revoked or
        rotated out, by any process), ``KeyNotActive`` and nothing of this call is committed.
        """
        if self._task is None or self._task.done():
            raise StoreUnavailable("the audit writer is not running")
        ticket: Ticket[AuditRecord] = Ticket(asyncio.get_running_loop(), len(items))
        # Every entry made before any is queued: one refused item queues none of its siblings.
        entries = [
            _Queued(self.make(**fields), ticket, index, active)
            for index, fields in enumerate(items)
        ]
        self._queue.extend(entries)
        self._wake.set()
        return await ticket.done

    def notify(self) -> None:
        """Records were committed elsewhere (a key change): stream and checkpoint them."""
        self._elsewhere = True
        self._wake.set()

    async def aclose(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        try:
            await self._commit_forever()
        finally:
            # Stopped, cancelled or broken by a bug: nobody may wait for a commit that never
            # comes (a caller would hold its token, or its request, for ever).
            error = StoreUnavailable("the audit writer stopped; nothing was committed")
            for queued in self._queue:
                queued.ticket.fail(error)
            self._queue = []

    async def _commit_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
            try:
                await self._publish()
            except SignerError as exc:
                log.warning("audit sink or checkpoint failed: %s", exc.code)
            except Exception:  # a full disk under the sink, a bad stored row: keep committing
                log.exception("audit sink or checkpoint failed")
            if self._stopping and not self._queue:
                return

    async def _publish(self) -> None:
        """Stream to the sink and checkpoint, as the publishing worker; else drop what only
        the publisher needs."""
        if not self._publishing():
            self._committed.clear()  # the leader streams; nothing to hold on to
            self._elsewhere = False
            self._was_publishing = False
            return
        if not self._was_publishing and self._sink_path is not None:
            # Another worker streamed until now: resume after what it wrote.
            self._streamed = _resume_sink(self._sink_path)
        self._was_publishing = True
        await self._catch_up()
        await self._maybe_checkpoint()

    async def _commit(self, batch: list[_Queued]) -> None:
        """Commit ``batch``; if keys it requires are no longer active, fail those entries'
        callers (``KeyNotActive``) and commit the rest."""
        while batch:
            inactive = await self._commit_once(batch)
            if not inactive:
                return
            refused = KeyNotActive(f"key {', '.join(sorted(inactive))} is no longer active")
            remaining = [queued for queued in batch if queued.active not in inactive]
            stuck = len(remaining) == len(batch)  # nothing to drop: never retry the same batch
            for queued in batch:
                if stuck or queued.active in inactive:
                    queued.ticket.fail(refused)
            batch = [] if stuck else remaining

    async def _commit_once(self, batch: list[_Queued]) -> frozenset[KeyId]:
        """Commit ``batch`` and answer its callers; or the keys it required that are no longer
        active (nothing committed)."""
        start = time.perf_counter()
        required = {queued.active for queued in batch if queued.active is not None}
        try:
            records = await self._store.append_audit(
                [queued.entry for queued in batch], require_active=required
            )
            if self._on_commit is not None:
                self._on_commit(len(records), time.perf_counter() - start)
        except KeysNotActive as exc:
            return exc.kids
        except Exception as exc:  # noqa: BLE001 -- every waiter must hear of the failure
            error = StoreUnavailable(f"audit records could not be committed: {exc}")
            for queued in batch:
                queued.ticket.fail(error)
            return frozenset()
        except BaseException:  # cancelled mid-commit: whether it landed is unknown, so no
            interrupted = StoreUnavailable("the audit commit was interrupted")
            for queued in batch:  # caller may act on it (a token would go unaudited)
                queued.ticket.fail(interrupted)
            raise
        self._committed.extend(records)
        self._own_head = records[-1]
        for queued, record in zip(batch, records, strict=True):
            queued.ticket.answer(queued.place, record)
        return frozenset()

    async def _catch_up(self) -> None:
        """Stream committed records past the sink's position, and note the head."""
        async with self._catching_up:
            await self._catch_up_now()

    async def _catch_up_now(self) -> None:
        """``_catch_up``, under its lock.

        Our own batches (and checkpoints) are streamed as committed; the store is read only when
        records written elsewhere (key changes, other workers) may sit between them, and without
        a sink only its head is read: reading every record back means parsing and re-hashing it.
        """
        own, self._committed = self._committed, []
        elsewhere, self._elsewhere = self._elsewhere, False
        if not own and not elsewhere:
            return
        contiguous = all(b.seq == a.seq + 1 for a, b in itertools.pairwise(own))
        if own and contiguous and own[0].seq == self._streamed + 1:
            records = own
        elif self._sink_path is None:
            head = await self._store.audit_last()
            records = [] if head is None or head.seq <= self._streamed else [head]
        else:
            records = await self._store.audit_records(after=self._streamed)
            if records and records[0].seq > self._streamed + 1:
                log.warning(
                    "audit sink: records %d to %d were pruned before they were streamed; they "
                    "are in the archive signer audit prune wrote",
                    self._streamed + 1,
                    records[0].seq - 1,
                )
        if not records:
            return
        self._head = records[-1]
        if self._sink_path is not None:
            with self._sink_path.open("a", encoding="utf-8") as sink:
                for record in records:
                    sink.write(record.line() + "\n")
        self._streamed = records[-1].seq

    async def _maybe_checkpoint(self) -> None:
        if self._sign is None or self._kid is None or self._head is None:
            return
        head = self._head
        if head.seq <= self._signed_seq or head.action == CHECKPOINT_ACTION:
            return
        due = head.seq - self._signed_seq >= self._every
        if not due and self._clock() - self._signed_at < self._seconds:
            return
        await self._sign_head(head)

    async def checkpoint(self) -> AuditRecord | None:
        """Sign the current chain head now (``signer audit checkpoint``, shutdown); only as
        the publishing worker (another one streaming too would duplicate the sink)."""
        if not self._publishing():
            return None
        await self._catch_up()
        if self._head is None or self._head.seq <= self._signed_seq:
            return None
        return await self._sign_head(self._head)

    async def _sign_head(self, head: AuditRecord) -> AuditRecord | None:
        if self._sign is None or self._kid is None:
            return None
        if not await self._own_head_intact():
            return None
        now = format_time(self._clock())
        signature = await self._sign(checkpoint_payload(head, kid=self._kid, time=now))
        item = checkpoint_entry(head, kid=self._kid, time=now, signature=signature)
        (record,) = await self._store.append_audit([item])
        self._committed.append(record)  # ours: streamed with the batches, not read back
        self._signed_seq = head.seq
        self._signed_at = self._clock()
        self._wake.set()
        return record

    async def _own_head_intact(self) -> bool:
        """Whether the last record this writer committed is still stored as it wrote it.

        A checkpoint signs the stored chain's head. Whoever can write the store can rewrite
        unsigned records and recompute their hashes; the next checkpoint would then sign the
        rewrite. Every hash covers all records before it, so a rewrite of any record up to the
        last one written here changes that one's stored hash: then refuse to sign, and say so.
        """
        own = self._own_head
        if own is None:
            return True
        stored = await self._store.audit_records(after=own.seq - 1, limit=1)
        if stored and stored[0].seq == own.seq and stored[0].hash == own.hash:
            return True
        if own.seq <= (await self._store.audit_anchor()).seq <= self._signed_seq:
            # Archived and pruned (signer audit prune) at a cut a checkpoint had signed: it
            # was verified under that signature first, and is no longer here to compare.
            self._own_head = None
            return True
        log.error(
            "the audit log was changed after record %d was written; no checkpoint will be "
            "signed over it (run signer audit verify)",
            own.seq,
        )
        return False


SINK_TAIL_BYTES = 1 << 16  # far more than one record


def _resume_sink(path: Path) -> int:
    """The seq of the last complete record in the sink, after ending a line a crash cut short
    (so the next record starts a line of its own rather than joining the broken one)."""
    if not path.exists():
        return 0
    with path.open("rb+") as handle:
        size = handle.seek(0, 2)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    return _last_seq_in(path)


def _last_seq_in(path: Path) -> int:
    """The seq of the last complete record in a sink file (0 for a new or empty file).

    Read from the end, a tail at a time, growing until a whole record is found: one record can
    be longer than the first tail read.
    """
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        tail = SINK_TAIL_BYTES
        while True:
            handle.seek(max(0, size - tail))
            lines = handle.read().split(b"\n")
            if tail < size:
                lines = lines[1:]  # the first may start mid-record
            for line in reversed(lines):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    return int(json.loads(line)["seq"])
            if tail >= size:
                return 0
            tail *= 4
