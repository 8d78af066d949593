"""Redis ``StateStore``: one store for several signer replicas behind a load balancer.

Atomicity. Every write that has to check something (a key's state, an approval's version, the
audit chain's head, the lifecycle lease) is an optimistic transaction: ``WATCH`` the keys it
reads, read and decide in Python, then ``MULTI``/``EXEC`` the writes. If another client touched
a watched key in between, ``EXEC`` does nothing and the whole transaction runs again from the
reads; a check that then fails raises ``StaleWrite``/``FencedOut``. An ``EXEC`` whose reply is
lost is not taken for a conflict: a marker written in the same ``EXEC`` tells whether it
committed, so each transaction commits at most once (``_transact``). The audit chain is hashed
in Python (``signer.audit.chain``; Lua has no SHA-256), and watching the chain's list is what
keeps it one chain, without forks, whichever replica appends. A key or approval write and its
audit records are one ``EXEC``, so they commit together or not at all. The two writes that need
no Python (the lease and the watermark) are Lua scripts (``redis_schema``), atomic by nature.

Change feed. Each key-record write publishes its ring on ``<prefix>changes`` inside the same
``EXEC``, so a subscriber that hears it and re-reads sees the write (``watch_changes``).

Durability. The store is only as durable as the server is configured to be. Run it with
``appendonly yes`` and ``appendfsync always``, so an acknowledged ``EXEC`` is on disk (the audit
log promises a signature is not returned before its record is durable); ``maxmemory-policy
noeviction``, so Redis never drops a key to make room; and keep the prefix's keys to this store.
With replicas and Sentinel, a failover can lose writes the old master acknowledged but had not
replicated; ``min-replicas-to-write 1`` with ``min-replicas-max-lag`` narrows that window.

Errors. ``RedisError`` and socket errors become ``StoreUnavailable`` at this boundary; the client
retries a failed connection twice, and reconnects by itself once the server is back. A
transaction whose ``EXEC`` reply is lost, on a server that then cannot say whether it committed,
is ``StoreUnavailable`` too: the write may have landed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Final, TypeVar

from redis.asyncio.client import Pipeline

from jwks.records import KeyRecord, KeyState
from jwks.thumbprint import KeyId
from signer.approvals.rules import ApprovalRequest
from signer.approvals.rules import from_json as approval_from_json
from signer.audit.chain import AuditEntry, AuditRecord, link_all
from signer.codesign.records import SigningRequest
from signer.codesign.records import from_json as signing_request_from_json
from signer.errors import KeyNotActive, StoreError, StoreUnavailable
from signer.store.base import (
    NO_ANCHOR,
    AuditAnchor,
    Fence,
    FencedOut,
    KeysNotActive,
    KeyUpdate,
    StaleWrite,
)
from signer.store.redis_client import (
    MAX_CONNECTIONS,
    Connection,
    change_feed,
    connect,
    fields,
    opt_text,
    redis_errors,
    text,
    texts,
)
from signer.store.redis_client import (
    row as text_row,
)
from signer.store.redis_documents import (
    APPROVAL,
    SIGNING_REQUEST,
    NewDocument,
    VersionedDocuments,
    versioned,
)
from signer.store.redis_schema import (
    AUDIT_LAST_SCRIPT,
    AUDIT_RANGE_SCRIPT,
    AUDIT_TRIM_SCRIPT,
    LEASE_SCRIPT,
    WATERMARK_SCRIPT,
    Names,
    decode_record,
    encode_record,
    lease_value,
)
from signer.store.redis_transaction import (
    UNKNOWN_OUTCOME,
    Prepare,
    Queue,
    committed,
    new_marker,
    queue_marker,
)

T = TypeVar("T")
# How an active key's ``state`` field reads (``encode_record``: each attribute as JSON).
_ACTIVE_STATE = json.dumps(KeyState.ACTIVE.value)

DEFAULT_PREFIX: Final = "signer:"
TRANSACTION_ATTEMPTS: Final = 64  # WATCH conflicts before giving up (each retry re-reads)
# Records a prune trims from the chain's list per script call: about a millisecond of the
# server's one thread each.
PRUNE_RECORDS_PER_TRIM: Final = 5000


def _jitter(attempt: int) -> float:
    # Spread retrying writers apart so the same two do not collide again at once.
    return random.uniform(0, min(0.05, 0.0005 * 2**attempt))  # noqa: S311 -- jitter, no secret


class RedisStore(VersionedDocuments):
    """A ``StateStore`` in one Redis database (directly, or via Sentinel), under a key prefix."""

    replicated = True  # replicas on other hosts share it: lifecycle needs a leader

    def __init__(self, connection: Connection, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._connection = connection
        self._client = client = connection.client
        self._names = Names(prefix)
        self._lease = client.register_script(LEASE_SCRIPT)
        self._watermark = client.register_script(WATERMARK_SCRIPT)
        self._audit_range = client.register_script(AUDIT_RANGE_SCRIPT)
        self._audit_last = client.register_script(AUDIT_LAST_SCRIPT)
        self._audit_trim = client.register_script(AUDIT_TRIM_SCRIPT)
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS - 8)  # leave room for subscriptions
        self._closed = False
        self._closing = asyncio.Event()

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, password: str | None = None
    ) -> RedisStore:
        """A store on the server a ``redis_url`` form names (connected on first use);
        ``password`` is used when the URL carries none."""
        return cls(connect(url, password=password), prefix=prefix)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """One use of the server: refused once closed, within the connection budget, and with
        the client's errors translated."""
        if self._closed:
            raise StoreUnavailable("the Redis store is closed")
        # The pool raises rather than waits when it runs out; a burst of signatures waits here.
        async with self._slots:
            with redis_errors():
                yield

    async def _transact(self, watch: Sequence[str], prepare: Prepare[T]) -> T:
        """Run ``prepare`` (reads and checks) under ``WATCH``, then its writes in ``MULTI``, and
        commit them at most once.

        A conflict re-runs both; ``prepare`` raises to refuse. ``StoreUnavailable`` if the keys
        stay contended for ``TRANSACTION_ATTEMPTS`` rounds.

        A failed ``EXEC`` is not always a conflict. redis-py raises the same ``WatchError`` when
        the connection drops or times out while watching (``_disconnect_raise_on_watching``),
        and then the server may have run the ``EXEC`` and only its reply was lost. Running the
        transaction again would apply it twice: the audit records a second time, ``StaleWrite``
        for an insert that landed, a compare-and-set refused because its own first write moved
        the state on. So each attempt also sets (and watches) a marker key of its own, and after
        a failed ``EXEC`` asks the server whether it is there (``redis_transaction.committed``,
        which also stops a still-queued ``EXEC`` from landing later): if so, the attempt
        committed and its result is returned; if not, nothing was written and the transaction
        runs again. A server that cannot be asked is ``StoreUnavailable``, never a retry. (A
        real conflict pays one more round trip for the question.)
        """
        async with self._session():
            for attempt in range(TRANSACTION_ATTEMPTS):
                marker = new_marker(self._names)
                async with self._client.pipeline(transaction=True) as pipe:
                    # Watching the marker also means redis-py never re-sends an EXEC by itself:
                    # it retries a failed pipeline only when nothing is watched.
                    await pipe.watch(marker, *watch)
                    result, queue = await prepare(pipe)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    queue(pipe)
                    queue_marker(pipe, marker)
                    try:
                        await pipe.execute()
                    except UNKNOWN_OUTCOME:
                        pass  # asked below, once the pipeline's connection is given back
                    else:
                        return result
                if await committed(self._client, marker):
                    return result
                await asyncio.sleep(_jitter(attempt))
        raise StoreUnavailable(f"Redis store contended: no commit in {TRANSACTION_ATTEMPTS} tries")

    async def _check_fence(self, pipe: Pipeline, fence: Fence | None) -> None:
        if fence is None:
            return
        held = await pipe.get(self._names.lease(fence.name))
        if held != lease_value(fence.epoch, fence.owner):
            raise FencedOut(
                f"lease {fence.name} is no longer held by {fence.owner} at epoch {fence.epoch}"
            )

    def _watch(
        self, keys: list[str], audit: Sequence[AuditEntry], fence: Fence | None
    ) -> list[str]:
        """``keys``, plus the chain's list when appending and the lease when fenced."""
        if audit:
            keys.append(self._names.audit)
        if fence is not None:
            keys.append(self._names.lease(fence.name))
        return keys

    async def _chain(self, pipe: Pipeline, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Link ``entries`` after the chain's current head (read under the caller's WATCH)."""
        if not entries:
            return []
        raw = await pipe.lindex(self._names.audit, -1)
        head = None if raw is None else AuditRecord.from_json(json.loads(raw))
        return link_all(entries, head=head)

    async def _require_active(self, pipe: Pipeline, kids: Sequence[KeyId]) -> None:
        """Under the caller's WATCH of the keys' hashes: ``KeysNotActive`` unless every key is
        active."""
        states = [opt_text(await pipe.hget(self._names.key(kid), "state")) for kid in kids]
        inactive = frozenset(
            kid for kid, state in zip(kids, states, strict=True) if state != _ACTIVE_STATE
        )
        if inactive:
            raise KeysNotActive(inactive)

    def _queue_audit(self, pipe: Pipeline, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        lines = [r.line() for r in records]
        pipe.rpush(self._names.audit, *lines)
        pipe.hset(self._names.audit_last, mapping={r.action: str(r.seq) for r in records})

    async def keys(self, ring: str | None = None) -> list[KeyRecord]:
        """Every key record (of ``ring``), oldest first, as of one instant."""
        index = self._names.keys if ring is None else self._names.ring(ring)
        async with self._session():
            kids = texts(await self._client.zrange(index, 0, -1))
            if not kids:
                return []
            # One MULTI of reads: every record as of the same instant (records are never deleted).
            async with self._client.pipeline(transaction=True) as pipe:
                for kid in kids:
                    pipe.hgetall(self._names.key(kid))
                rows = await pipe.execute()
        return [decode_record(text_row(row)) for row in rows if row]

    async def get_key(self, kid: KeyId) -> KeyRecord | None:
        """The record of ``kid``, if any."""
        async with self._session():
            row = text_row(await self._client.hgetall(self._names.key(kid)))
        return decode_record(row) if row else None

    async def insert_key(
        self,
        record: KeyRecord,
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        """Add a new key and its audit records atomically; ``StaleWrite`` if the kid, its token
        key id or (for an active key) its ring's active slot is taken."""
        names, kid, ring = self._names, record.kid, record.ring
        active = record.state is KeyState.ACTIVE
        watch = [names.key(kid), names.key_id(record.key_id), names.keyseq, names.active(ring)]

        async def prepare(pipe: Pipeline) -> tuple[None, Queue]:
            await self._check_fence(pipe, fence)
            if await pipe.exists(names.key(kid)):
                raise StaleWrite(f"key {kid} already exists")
            if (holder := opt_text(await pipe.get(names.key_id(record.key_id)))) is not None:
                raise StaleWrite(f"token key id {record.key_id} already belongs to key {holder}")
            if active and (current := opt_text(await pipe.get(names.active(ring)))) is not None:
                raise StaleWrite(f"ring {ring} already has the active key {current}")
            seq = int(await pipe.get(names.keyseq) or 0) + 1
            chained = await self._chain(pipe, audit)

            def queue(pipe: Pipeline) -> None:
                pipe.hset(names.key(kid), mapping=fields(encode_record(record, seq)))
                pipe.set(names.keyseq, seq)
                pipe.zadd(names.keys, {kid: seq})
                pipe.zadd(names.ring(ring), {kid: seq})
                pipe.set(names.key_id(record.key_id), kid)
                if active:
                    pipe.set(names.active(ring), kid)
                self._queue_audit(pipe, chained)
                pipe.publish(names.changes, ring)

            return None, queue

        await self._transact(self._watch(watch, audit, fence), prepare)

    async def update_keys(
        self,
        updates: Sequence[KeyUpdate],
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        """Apply all updates (each a compare-and-set on state) and their audit records in one
        ``EXEC``, or none: ``StaleWrite``. At most one active key per ring, checked in order."""
        names = self._names
        rings = sorted({u.record.ring for u in updates})
        watch = [names.key(u.record.kid) for u in updates] + [names.active(r) for r in rings]

        async def prepare(pipe: Pipeline) -> tuple[None, Queue]:
            await self._check_fence(pipe, fence)
            active = {r: opt_text(await pipe.get(names.active(r))) for r in rings}
            written: dict[str, tuple[KeyRecord, str]] = {}
            for item in updates:
                new, kid = item.record, item.record.kid
                if kid in written:  # a second update of one key applies to the first's result
                    current, seq = written[kid]
                else:
                    row = text_row(await pipe.hgetall(names.key(kid)))
                    if not row:
                        raise StaleWrite(f"key {kid} is no longer {item.expected.value}")
                    current, seq = decode_record(row), row["seq"]
                if current.state is not item.expected:
                    raise StaleWrite(f"key {kid} is no longer {item.expected.value}")
                if (new.ring, new.key_id) != (current.ring, current.key_id):
                    raise StoreError(f"key {kid}: a key's ring and token key id never change")
                new = _keep_watermark(new, current)
                if current.state is KeyState.ACTIVE and active[new.ring] == kid:
                    active[new.ring] = None
                if new.state is KeyState.ACTIVE:
                    if active[new.ring] not in (None, kid):
                        raise StaleWrite(f"ring {new.ring} already has an active key")
                    active[new.ring] = kid
                written[kid] = (new, seq)
            chained = await self._chain(pipe, audit)

            def queue(pipe: Pipeline) -> None:
                for kid, (new, seq) in written.items():
                    pipe.hset(names.key(kid), mapping=fields(encode_record(new, int(seq))))
                for ring, holder in active.items():
                    if holder is None:
                        pipe.delete(names.active(ring))
                    else:
                        pipe.set(names.active(ring), holder)
                self._queue_audit(pipe, chained)
                for ring in rings:
                    pipe.publish(names.changes, ring)

            return None, queue

        await self._transact(self._watch(watch, audit, fence), prepare)

    async def raise_watermark(self, kid: KeyId, exp: int) -> int:
        """Set the active key's ``exp_watermark`` to at least ``exp`` (one script, atomic)."""
        async with self._session():
            stored = await self._watermark(keys=[self._names.key(kid)], args=[str(int(exp))])
        if stored is None:
            raise KeyNotActive(f"key {kid} is not active")
        return int(stored)

    async def append_audit(
        self, entries: Sequence[AuditEntry], *, require_active: Collection[KeyId] = ()
    ) -> list[AuditRecord]:
        """Chain ``entries`` onto the head and commit them in one ``EXEC``; return them.
        ``KeysNotActive`` (nothing committed) if a key of ``require_active`` is not active:
        the keys are watched with the chain, so a revocation racing the commit aborts it."""
        if not entries:
            return []
        kids = sorted(set(require_active))
        watched = [self._names.key(kid) for kid in kids]

        async def prepare(pipe: Pipeline) -> tuple[list[AuditRecord], Queue]:
            await self._require_active(pipe, kids)
            chained = await self._chain(pipe, entries)
            return chained, lambda pipe: self._queue_audit(pipe, chained)

        return await self._transact([self._names.audit, *watched], prepare)

    async def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Records with ``seq > after`` in order, at most ``limit``."""
        if limit == 0:
            return []
        raws = await self._raw(after, -1 if limit is None else limit)
        return [AuditRecord.from_json(json.loads(raw)) for raw in raws]

    async def audit_last(self, *, action: str | None = None) -> AuditRecord | None:
        """The newest audit record (of ``action``), if any is stored."""
        names = self._names
        async with self._session():
            raw = await self._audit_last(
                keys=[names.audit, names.audit_anchor, names.audit_last], args=[action or ""]
            )
        return None if raw is None else AuditRecord.from_json(json.loads(raw))

    async def audit_raw(self, *, after: int = 0) -> list[str]:
        """The stored JSON of each record with ``seq > after``, unparsed, for verification."""
        return await self._raw(after, -1)

    async def _raw(self, after: int, limit: int) -> list[str]:
        return (await self._range(after, limit))[1]

    async def audit_export(self, *, after: int = 0) -> tuple[AuditAnchor, list[str]]:
        """The anchor, and the stored JSON of each record with ``seq > after``, as of one
        instant (one script)."""
        return await self._range(after, -1)

    async def _range(self, after: int, limit: int) -> tuple[AuditAnchor, list[str]]:
        """Through the range script: the list and its anchor, read as of one instant."""
        names = self._names
        async with self._session():
            seq, hash_, lines = await self._audit_range(
                keys=[names.audit, names.audit_anchor], args=[max(after, 0), limit]
            )
        cut = int(text(seq))
        anchor = NO_ANCHOR if cut == 0 else AuditAnchor(seq=cut, hash=text(hash_))
        return anchor, texts(lines)

    async def audit_anchor(self) -> AuditAnchor:
        """Where the stored log starts (``NO_ANCHOR`` if nothing was ever pruned)."""
        async with self._session():
            stored = text_row(await self._client.hgetall(self._names.audit_anchor))
        if "seq" not in stored:
            return NO_ANCHOR
        return AuditAnchor(seq=int(stored["seq"]), hash=stored["hash"])

    async def prune_audit(
        self, *, through: int, expected_hash: str, audit: Sequence[AuditEntry] = ()
    ) -> list[AuditRecord]:
        """Anchor the chain at ``through`` (stored with ``expected_hash``, and not the head) and
        append ``audit`` in one ``EXEC``, else ``StaleWrite``; then trim the records up to it
        from the list, ``PRUNE_RECORDS_PER_TRIM`` per script call. Reads skip records at or
        below the anchor meanwhile (and after a crash between the two: the next prune trims
        them)."""
        names = self._names

        async def prepare(pipe: Pipeline) -> tuple[list[AuditRecord], Queue]:
            cut, base = await pipe.hmget(names.audit_anchor, ["seq", "base"])
            index = through - 1 - int(base or 0)
            raw = None if through <= int(cut or 0) else await pipe.lindex(names.audit, index)
            if raw is None or AuditRecord.from_json(json.loads(raw)).hash != expected_hash:
                raise StaleWrite(f"audit record {through} is not stored with that hash")
            if index + 1 >= await pipe.llen(names.audit):
                raise StaleWrite(f"audit record {through} is the head: nothing would remain")
            chained = await self._chain(pipe, audit)

            def queue(pipe: Pipeline) -> None:
                pipe.hset(names.audit_anchor, mapping={"seq": str(through), "hash": expected_hash})
                self._queue_audit(pipe, chained)

            return chained, queue

        records = await self._transact([names.audit, names.audit_anchor], prepare)
        async with self._session():
            keys = [names.audit, names.audit_anchor]
            while await self._audit_trim(keys=keys, args=[PRUNE_RECORDS_PER_TRIM]):
                pass
        return records

    async def insert_approval(
        self, request: ApprovalRequest, *, audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Add a new approval request and its audit records atomically."""
        await self._insert_documents(
            [NewDocument(APPROVAL, request.id, request.created_at, versioned(request))], audit
        )

    async def update_approval(
        self,
        request: ApprovalRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Replace a request still at ``expected_version`` (else ``StaleWrite``), with audit."""
        await self._update_document(
            APPROVAL, request.id, expected_version, versioned(request), audit
        )

    async def get_approval(self, approval_id: str) -> ApprovalRequest | None:
        """One approval request, if it exists."""
        body = await self._get_document(APPROVAL, approval_id)
        return None if body is None else approval_from_json(json.loads(body))

    async def approvals(self, *, state: str | None = None) -> list[ApprovalRequest]:
        """Approval requests (in ``state``), oldest first."""
        return [approval_from_json(json.loads(b)) for b in await self._documents(APPROVAL, state)]

    async def insert_signing_request(
        self,
        record: SigningRequest,
        *,
        approval: ApprovalRequest | None = None,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Add a signing request, its ``approval`` (if given) and their audit records
        atomically; ``StaleWrite`` if either exists."""
        documents = [NewDocument(SIGNING_REQUEST, record.id, record.created_at, versioned(record))]
        if approval is not None:
            linked = NewDocument(APPROVAL, approval.id, approval.created_at, versioned(approval))
            documents.insert(0, linked)
        await self._insert_documents(documents, audit)

    async def update_signing_request(
        self,
        record: SigningRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
        require_active: Collection[KeyId] = (),
    ) -> None:
        """Replace a signing request still at ``expected_version`` (else ``StaleWrite``;
        ``KeysNotActive`` if a key of ``require_active`` is not active)."""
        await self._update_document(
            SIGNING_REQUEST,
            record.id,
            expected_version,
            versioned(record),
            audit,
            require_active=sorted(set(require_active)),
        )

    async def get_signing_request(self, request_id: str) -> SigningRequest | None:
        """One signing request, if it exists."""
        body = await self._get_document(SIGNING_REQUEST, request_id)
        return None if body is None else signing_request_from_json(json.loads(body))

    async def signing_requests(self, *, state: str | None = None) -> list[SigningRequest]:
        """Signing requests (in ``state``), oldest first."""
        bodies = await self._documents(SIGNING_REQUEST, state)
        return [signing_request_from_json(json.loads(body)) for body in bodies]

    async def get_meta(self, key: str) -> str | None:
        """A small named value."""
        async with self._session():
            value = await self._client.hget(self._names.meta, key)
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str, *, audit: Sequence[AuditEntry] = ()) -> None:
        """Set a small named value and its audit records atomically."""
        if not audit:
            async with self._session():
                await self._client.hset(self._names.meta, key, value)
            return

        async def prepare(pipe: Pipeline) -> tuple[None, Queue]:
            chained = await self._chain(pipe, audit)

            def queue(pipe: Pipeline) -> None:
                pipe.hset(self._names.meta, key, value)
                self._queue_audit(pipe, chained)

            return None, queue

        await self._transact([self._names.audit], prepare)

    async def try_lease(self, name: str, owner: str, *, ttl: float, now: float) -> int | None:
        """Take or extend lease ``name`` for ``owner`` for ``ttl`` seconds; its epoch, or None.

        Expiry is the server's (``PX``), one clock for every replica whatever their skew, so
        ``now`` is not used here.
        """
        del now
        ttl_ms = max(1, round(ttl * 1000))
        keys = [self._names.lease(name), self._names.lease_last(name)]
        async with self._session():
            epoch = await self._lease(keys=keys, args=[owner, ttl_ms])
        return None if epoch is None else int(epoch)

    def watch_changes(self) -> AsyncGenerator[str, None]:
        """Yield the ring of each key-record write, from any replica, until the store closes;
        ``ANY_RING`` after a resubscription (see ``redis_client.change_feed``)."""
        return change_feed(self._client, self._names.changes, self._closing)

    async def aping(self) -> None:
        """Raise ``StoreUnavailable`` unless the server answers."""
        async with self._session():
            await self._client.ping()

    async def aclose(self) -> None:
        """Close the connections (and the Sentinel ones); end ``watch_changes``."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        with redis_errors():
            await self._connection.aclose()


def _keep_watermark(new: KeyRecord, current: KeyRecord) -> KeyRecord:
    """``new`` with the larger watermark of the two (a signature may have raised it since)."""
    marks = [m for m in (new.exp_watermark, current.exp_watermark) if m is not None]
    if not marks or new.exp_watermark == max(marks):
        return new
    return replace(new, exp_watermark=max(marks))
