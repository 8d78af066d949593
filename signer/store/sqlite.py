"""SQLite ``StateStore``: the embedded single-node default.

One connection, used from one worker thread (sqlite3 connections are thread-bound), in WAL mode
with ``synchronous=FULL`` so a committed record survives power loss.

Leases live in ``meta`` (``lease:<name>`` → owner, epoch, expiry). A fenced write reads the lease
row inside its own ``BEGIN IMMEDIATE`` transaction, which holds the database's write lock, so no
takeover can slip in between the check and the write.

There is no change feed: the workers of one node sharing a file notice each other's writes by
re-reading (``watch_changes`` never yields).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from jwks.records import KeyRecord
from jwks.thumbprint import KeyId
from signer.approvals.rules import ApprovalRequest
from signer.approvals.rules import from_json as approval_from_json
from signer.approvals.rules import to_json as approval_json
from signer.audit.chain import AuditEntry, AuditRecord, link_all
from signer.codesign.records import SigningRequest
from signer.codesign.records import from_json as signing_request_from_json
from signer.codesign.records import to_json as signing_request_json
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
from signer.store.sqlite_schema import COLUMNS, SCHEMA, SCHEMA_VERSION, from_row, to_row

T = TypeVar("T")
# 900 bound parameters: within the 999 that SQLite before 3.32 allows in one statement.
AUDIT_ROWS_PER_INSERT = 300
BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another connection's lock
LOCKED_RETRY_S = 0.02
# The meta row holding the audit log's anchor (``prune_audit``), as {"seq": …, "hash": …}.
# Reads skip records at or below its seq: what a prune has yet to delete.
AUDIT_ANCHOR = "audit.anchor"
# Records deleted per transaction by a prune: a few milliseconds of the write lock each, where
# deleting a million at once held it for seconds and a serving signer's commits timed out.
PRUNE_ROWS_PER_DELETE = 5000


@contextmanager
def sqlite_errors() -> Iterator[None]:
    """Translate sqlite3 errors into the store's error family."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise StaleWrite(f"conflicting write: {exc}") from exc
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite store error: {exc}") from exc


# The tables of versioned documents (same shape, see sqlite_schema), and what each holds.
_APPROVALS = "approvals"
_SIGNING_REQUESTS = "signing_requests"
_WHAT = {_APPROVALS: "approval", _SIGNING_REQUESTS: "signing request"}


def _lease_key(name: str) -> str:
    return f"lease:{name}"


def _check_fence(conn: sqlite3.Connection, fence: Fence | None, wall_now: float) -> None:
    """Inside the caller's write transaction: ``FencedOut`` unless ``fence`` still holds."""
    if fence is None:
        return
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_lease_key(fence.name),)).fetchone()
    holder = None if row is None else json.loads(row[0])
    if (
        holder is None
        or holder["owner"] != fence.owner
        or holder.get("epoch") != fence.epoch
        or holder.get("deadline", 0.0) <= wall_now
    ):
        raise FencedOut(
            f"lease {fence.name} is no longer held by {fence.owner} at epoch {fence.epoch}"
        )


def _append_audit(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
    """Chain ``entries`` onto the stored head inside the caller's transaction.

    One statement per ``AUDIT_ROWS_PER_INSERT`` records: sqlite3 lets go of the GIL around every
    statement it steps, and under load each take-back waits behind the event loop.
    """
    if not entries:
        return []
    head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    records = link_all(entries, head=None if head is None else _Head(*head))
    for start in range(0, len(records), AUDIT_ROWS_PER_INSERT):
        chunk = records[start : start + AUDIT_ROWS_PER_INSERT]
        rows = ",".join(["(?, ?, ?)"] * len(chunk))
        values = [value for r in chunk for value in (r.seq, r.hash, r.line())]
        conn.execute(f"INSERT INTO audit (seq, hash, record) VALUES {rows}", values)  # noqa: S608 -- placeholders only
    return records


def _anchor(conn: sqlite3.Connection) -> AuditAnchor:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (AUDIT_ANCHOR,)).fetchone()
    if row is None:
        return NO_ANCHOR
    stored = json.loads(row[0])
    return AuditAnchor(seq=int(stored["seq"]), hash=str(stored["hash"]))


def _require_active(conn: sqlite3.Connection, kids: Sequence[KeyId]) -> None:
    """Inside the caller's write transaction: ``KeysNotActive`` unless every key is active."""
    if not kids:
        return
    marks = ",".join("?" * len(kids))
    rows = conn.execute(
        f"SELECT kid FROM keys WHERE state = 'active' AND kid IN ({marks})",  # noqa: S608 -- placeholders only
        list(kids),
    ).fetchall()
    inactive = frozenset(kids) - {row[0] for row in rows}
    if inactive:
        raise KeysNotActive(inactive)


class _Head(NamedTuple):
    seq: int
    hash: str


class SqliteStore:
    """A ``StateStore`` in one SQLite file."""

    replicated = False  # one node's file: shared only by that node's workers

    def __init__(self, path: Path, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._path = path
        # A lease's expiry for fencing is judged by this clock (like Redis judges it by its own),
        # not by the caller's, which tests move at will; see ``try_lease``.
        self._wall_clock = wall_clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._closing = asyncio.Event()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with sqlite_errors():
            if self._conn is None:
                self._conn = self._connect()
            return fn(self._conn)

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=True, timeout=BUSY_TIMEOUT_S
            )
            try:
                self._prepare(conn)
            except sqlite3.OperationalError as exc:
                conn.close()
                # Turning a new file to WAL takes a lock that SQLite does not wait for (its busy
                # handler is skipped where waiting could deadlock), so workers opening a fresh
                # store at the same moment get "database is locked": try again shortly.
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(LOCKED_RETRY_S)
            except BaseException:
                conn.close()
                raise
            else:
                return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self._path} has schema version {version}, newer than this signer's "
                f"{SCHEMA_VERSION}"
            )
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    async def keys(self, ring: str | None = None) -> list[KeyRecord]:
        """Every key record (of ``ring``), oldest first."""

        def query(conn: sqlite3.Connection) -> list[KeyRecord]:
            if ring is None:
                rows = conn.execute("SELECT * FROM keys ORDER BY seq").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM keys WHERE ring = ? ORDER BY seq", (ring,)
                ).fetchall()
            return [from_row(row) for row in rows]

        return await self._run(query)

    async def get_key(self, kid: KeyId) -> KeyRecord | None:
        """The record of ``kid``, if any."""

        def query(conn: sqlite3.Connection) -> KeyRecord | None:
            row = conn.execute("SELECT * FROM keys WHERE kid = ?", (kid,)).fetchone()
            return None if row is None else from_row(row)

        return await self._run(query)

    async def insert_key(
        self,
        record: KeyRecord,
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        """Add a new key (and its audit records, in the same transaction), if ``fence`` holds."""
        columns = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        wall_now = self._wall_clock()

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _check_fence(conn, fence, wall_now)
                seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM keys").fetchone()[0]
                conn.execute(
                    f"INSERT INTO keys ({columns}, seq) VALUES ({marks}, ?)",  # noqa: S608 -- fixed column names
                    (*to_row(record), seq),
                )
                _append_audit(conn, audit)

        await self._run(insert)

    async def update_keys(
        self,
        updates: Sequence[KeyUpdate],
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        """Apply all updates (and their audit records) atomically, or none: ``StaleWrite``.

        The watermark keeps the larger of the stored and the written value: a signature that
        raised it after the writer read the record must still hold the key in the JWKS.
        """
        assignments = ", ".join(
            "exp_watermark = MAX(COALESCE(exp_watermark, ?), COALESCE(?, exp_watermark))"
            if c == "exp_watermark"
            else f"{c} = ?"
            for c in COLUMNS
            if c != "kid"
        )
        watermark = COLUMNS.index("exp_watermark")
        wall_now = self._wall_clock()

        def update(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _check_fence(conn, fence, wall_now)
                for item in updates:
                    row = to_row(item.record)
                    values = (*row[1:watermark], row[watermark], *row[watermark:])
                    cursor = conn.execute(
                        f"UPDATE keys SET {assignments} WHERE kid = ? AND state = ?",  # noqa: S608 -- fixed column names
                        (*values, item.record.kid, item.expected.value),
                    )
                    if cursor.rowcount != 1:
                        raise StaleWrite(
                            f"key {item.record.kid} is no longer {item.expected.value}"
                        )
                _append_audit(conn, audit)

        await self._run(update)

    async def raise_watermark(self, kid: KeyId, exp: int) -> int:
        """Set the active key's ``exp_watermark`` to at least ``exp``; return the stored value."""

        def update(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE keys SET exp_watermark = MAX(COALESCE(exp_watermark, 0), ?) "
                "WHERE kid = ? AND state = 'active' RETURNING exp_watermark",
                (exp, kid),
            ).fetchone()
            if row is None:
                raise KeyNotActive(f"key {kid} is not active")
            return int(row[0])

        return await self._run(update)

    async def append_audit(
        self, entries: Sequence[AuditEntry], *, require_active: Collection[KeyId] = ()
    ) -> list[AuditRecord]:
        """Chain and commit ``entries`` in one transaction (a group commit); return them.
        ``KeysNotActive`` (nothing committed) if a key of ``require_active`` is not active."""
        kids = sorted(set(require_active))

        def append(conn: sqlite3.Connection) -> list[AuditRecord]:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _require_active(conn, kids)
                return _append_audit(conn, entries)

        return await self._run(append)

    async def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Records with ``seq > after`` in order, at most ``limit``."""

        def query(conn: sqlite3.Connection) -> list[AuditRecord]:
            rows = conn.execute(
                "SELECT record FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (max(after, _anchor(conn).seq), -1 if limit is None else limit),
            ).fetchall()
            return [AuditRecord.from_json(json.loads(row[0])) for row in rows]

        return await self._run(query)

    async def audit_last(self, *, action: str | None = None) -> AuditRecord | None:
        """The newest stored audit record (of ``action``), if any."""

        def query(conn: sqlite3.Connection) -> AuditRecord | None:
            if action is None:
                row = conn.execute("SELECT record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            else:
                row = conn.execute(
                    "SELECT record FROM audit WHERE json_extract(record, '$.action') = ? "
                    "AND seq > ? ORDER BY seq DESC LIMIT 1",
                    (action, _anchor(conn).seq),
                ).fetchone()
            return None if row is None else AuditRecord.from_json(json.loads(row[0]))

        return await self._run(query)

    async def audit_raw(self, *, after: int = 0) -> list[str]:
        """The stored JSON of each record with ``seq > after``, unparsed, for verification."""
        return (await self.audit_export(after=after))[1]

    async def audit_export(self, *, after: int = 0) -> tuple[AuditAnchor, list[str]]:
        """The anchor, and the stored JSON of each record with ``seq > after``, as of one
        instant (one read transaction: a prune committing meanwhile is seen whole or not)."""

        def query(conn: sqlite3.Connection) -> tuple[AuditAnchor, list[str]]:
            with conn:
                conn.execute("BEGIN")
                anchor = _anchor(conn)
                rows = conn.execute(
                    "SELECT record FROM audit WHERE seq > ? ORDER BY seq",
                    (max(after, anchor.seq),),
                ).fetchall()
            return anchor, [str(row[0]) for row in rows]

        return await self._run(query)

    async def audit_anchor(self) -> AuditAnchor:
        """Where the stored log starts (``NO_ANCHOR`` if nothing was ever pruned)."""
        return await self._run(_anchor)

    async def prune_audit(
        self, *, through: int, expected_hash: str, audit: Sequence[AuditEntry] = ()
    ) -> list[AuditRecord]:
        """Anchor the log at ``through`` (stored with ``expected_hash``, and not the head) and
        append ``audit`` in one transaction, else ``StaleWrite``; then delete the records up to
        it, ``PRUNE_ROWS_PER_DELETE`` per transaction so that no commit of a serving signer
        waits long. Reads skip records at or below the anchor meanwhile (and after a crash
        between the two: the next prune deletes them)."""

        def prune(conn: sqlite3.Connection) -> list[AuditRecord]:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT hash FROM audit WHERE seq = ?", (through,)).fetchone()
                if row is None or row[0] != expected_hash or through <= _anchor(conn).seq:
                    raise StaleWrite(f"audit record {through} is not stored with that hash")
                if conn.execute("SELECT 1 FROM audit WHERE seq > ?", (through,)).fetchone() is None:
                    raise StaleWrite(f"audit record {through} is the head: nothing would remain")
                anchor = json.dumps({"seq": through, "hash": expected_hash})
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (AUDIT_ANCHOR, anchor),
                )
                records = _append_audit(conn, audit)
            while True:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    deleted = conn.execute(
                        "DELETE FROM audit WHERE seq IN "
                        "(SELECT seq FROM audit WHERE seq <= ? ORDER BY seq LIMIT ?)",
                        (through, PRUNE_ROWS_PER_DELETE),
                    ).rowcount
                if deleted < PRUNE_ROWS_PER_DELETE:
                    return records

        return await self._run(prune)

    async def get_meta(self, key: str) -> str | None:
        """A small named value (e.g. the audit key's kid)."""

        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(query)

    async def set_meta(self, key: str, value: str, *, audit: Sequence[AuditEntry] = ()) -> None:
        """Set a small named value (and audit it) atomically."""

        def upsert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
                _append_audit(conn, audit)

        await self._run(upsert)

    async def try_lease(self, name: str, owner: str, *, ttl: float, now: float) -> int | None:
        """Take or extend lease ``name`` for ``owner``; its fencing epoch, or None if another
        owner holds it unexpired.

        Whether a holder's lease has run out is judged by the caller's ``now`` (the workers of
        one node share a clock; tests move it). Fenced writes judge it by this store's wall
        clock instead, from the deadline recorded here, so a paused leader is refused once
        ``ttl`` seconds have really passed whatever clock it was given.
        """
        wall_deadline = self._wall_clock() + ttl

        def acquire(conn: sqlite3.Connection) -> int | None:
            key = _lease_key(name)
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                epoch = 1
                if row is not None:
                    holder = json.loads(row[0])
                    last = int(holder.get("epoch", 0))
                    if holder["owner"] != owner and holder["expires"] > now:
                        return None
                    # Same owner (renewal, or a retake with nobody in between): same epoch.
                    epoch = last if holder["owner"] == owner and last > 0 else last + 1
                value = {"owner": owner, "epoch": epoch, "expires": now + ttl}
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value | {"deadline": wall_deadline})),
                )
                return epoch

        return await self._run(acquire)

    async def watch_changes(self) -> AsyncGenerator[str, None]:
        """No change feed in a file: wait until the store closes, yielding nothing."""
        await self._closing.wait()
        return
        yield  # an async generator that never yields  # pragma: no cover

    async def aping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._closed:
            return
        self._closing.set()

        def close(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            await self._run(close)
            self._conn = None
        self._closed = True
        self._executor.shutdown(wait=True)

    async def insert_approval(
        self, request: ApprovalRequest, *, audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Add a new approval request (and its audit records) atomically."""
        await self._insert_documents([(_APPROVALS, request, approval_json(request))], audit)

    async def update_approval(
        self,
        request: ApprovalRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Replace a request if it is still at ``expected_version``; else ``StaleWrite``."""
        await self._update_document(
            _APPROVALS, request, approval_json(request), expected_version, audit
        )

    async def get_approval(self, approval_id: str) -> ApprovalRequest | None:
        """One approval request, if it exists."""
        body = await self._get_document(_APPROVALS, approval_id)
        return None if body is None else approval_from_json(json.loads(body))

    async def approvals(self, *, state: str | None = None) -> list[ApprovalRequest]:
        """Approval requests (in ``state``), oldest first."""
        bodies = await self._documents(_APPROVALS, state)
        return [approval_from_json(json.loads(body)) for body in bodies]

    async def insert_signing_request(
        self,
        record: SigningRequest,
        *,
        approval: ApprovalRequest | None = None,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Add a signing request, its ``approval`` (if given) and their audit records
        atomically; ``StaleWrite`` if either exists."""
        documents: list[tuple[str, ApprovalRequest | SigningRequest, Mapping[str, Any]]] = []
        if approval is not None:
            documents.append((_APPROVALS, approval, approval_json(approval)))
        documents.append((_SIGNING_REQUESTS, record, signing_request_json(record)))
        await self._insert_documents(documents, audit)

    async def update_signing_request(
        self,
        record: SigningRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
        require_active: Collection[KeyId] = (),
    ) -> None:
        """Replace a signing request still at ``expected_version``; else ``StaleWrite``
        (``KeysNotActive`` if a key of ``require_active`` is not active)."""
        await self._update_document(
            _SIGNING_REQUESTS,
            record,
            signing_request_json(record),
            expected_version,
            audit,
            require_active=sorted(set(require_active)),
        )

    async def get_signing_request(self, request_id: str) -> SigningRequest | None:
        """One signing request, if it exists."""
        body = await self._get_document(_SIGNING_REQUESTS, request_id)
        return None if body is None else signing_request_from_json(json.loads(body))

    async def signing_requests(self, *, state: str | None = None) -> list[SigningRequest]:
        """Signing requests (in ``state``), oldest first."""
        bodies = await self._documents(_SIGNING_REQUESTS, state)
        return [signing_request_from_json(json.loads(body)) for body in bodies]

    # Approvals and signing requests are versioned documents, each in a table of the same shape
    # (id, state, version, created_at, body); every write is a compare-and-set on the version.

    async def _insert_documents(
        self,
        documents: Sequence[tuple[str, ApprovalRequest | SigningRequest, Mapping[str, Any]]],
        audit: Sequence[AuditEntry],
    ) -> None:
        """Insert each ``(table, document, body)`` and the audit records in one transaction."""

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for table, document, body in documents:
                    conn.execute(  # a taken id fails as IntegrityError: StaleWrite (sqlite_errors)
                        f"INSERT INTO {table} (id, state, version, created_at, body) "  # noqa: S608 -- table is one of two constants
                        "VALUES (?, ?, ?, ?, ?)",
                        (
                            document.id,
                            document.state.value,
                            document.version,
                            document.created_at,
                            json.dumps(body),
                        ),
                    )
                _append_audit(conn, audit)

        await self._run(insert)

    async def _update_document(
        self,
        table: str,
        document: ApprovalRequest | SigningRequest,
        body: Mapping[str, Any],
        expected_version: int,
        audit: Sequence[AuditEntry],
        *,
        require_active: Sequence[KeyId] = (),
    ) -> None:
        def update(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _require_active(conn, require_active)
                cursor = conn.execute(
                    f"UPDATE {table} SET state = ?, version = ?, body = ? "  # noqa: S608 -- table is one of two constants
                    "WHERE id = ? AND version = ?",
                    (
                        document.state.value,
                        document.version,
                        json.dumps(body),
                        document.id,
                        expected_version,
                    ),
                )
                if cursor.rowcount != 1:
                    raise StaleWrite(f"{_WHAT[table]} {document.id} changed concurrently")
                _append_audit(conn, audit)

        await self._run(update)

    async def _get_document(self, table: str, doc_id: str) -> str | None:
        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                f"SELECT body FROM {table} WHERE id = ?",  # noqa: S608 -- a constant table
                (doc_id,),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(query)

    async def _documents(self, table: str, state: str | None) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            where, args = ("", ()) if state is None else (" WHERE state = ?", (state,))
            rows = conn.execute(
                f"SELECT body FROM {table}{where} ORDER BY created_at, rowid",  # noqa: S608 -- constants
                args,
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._run(query)
