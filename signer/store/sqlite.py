"""SQLite ``StateStore``: the embedded single-node default.

One connection, used from one worker thread (sqlite3 connections are thread-bound), in WAL mode
with ``synchronous=FULL`` so a committed record survives power loss.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from jwks.algorithms import Alg
from jwks.records import KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId
from signer.approvals.rules import ApprovalRequest
from signer.approvals.rules import from_json as approval_from_json
from signer.approvals.rules import to_json as approval_json
from signer.audit.chain import AuditEntry, AuditRecord, link_all
from signer.errors import KeyNotActive, StoreError, StoreUnavailable
from signer.store.base import KeyUpdate, StaleWrite

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY,
    ring TEXT NOT NULL,
    alg TEXT NOT NULL,
    key_id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    jwk TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    published_at INTEGER,
    activated_at INTEGER,
    draining_at INTEGER,
    retired_at INTEGER,
    revoked_at INTEGER,
    destroyed_at INTEGER,
    revoke_reason TEXT,
    exp_watermark INTEGER,
    rotate_requested_at INTEGER,
    emergency INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_by_ring ON keys (ring, seq);
-- DESIGN.md: exactly one active key per ring, enforced by the database as well.
CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_ring ON keys (ring) WHERE state = 'active';
-- The audit chain: each row is one record's exported JSON; seq and hash are indexed copies.
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state, created_at);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_COLUMNS = (
    "kid",
    "ring",
    "alg",
    "key_id",
    "label",
    "jwk",
    "state",
    "created_at",
    "published_at",
    "activated_at",
    "draining_at",
    "retired_at",
    "revoked_at",
    "destroyed_at",
    "revoke_reason",
    "exp_watermark",
    "rotate_requested_at",
    "emergency",
)


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


def _to_row(record: KeyRecord) -> tuple[Any, ...]:
    values = {name: getattr(record, name) for name in _COLUMNS}
    values["jwk"] = json.dumps(dict(record.jwk), sort_keys=True)
    values["alg"] = record.alg.value
    values["state"] = record.state.value
    return tuple(values[name] for name in _COLUMNS)


def _from_row(row: sqlite3.Row) -> KeyRecord:
    values = {name: row[name] for name in _COLUMNS}
    values["jwk"] = json.loads(row["jwk"])
    values["alg"] = Alg(row["alg"])
    values["state"] = KeyState(row["state"])
    values["kid"] = KeyId(row["kid"])
    values["ring"] = RingName(row["ring"])
    values["emergency"] = bool(row["emergency"])
    return KeyRecord(**values)


def _append_audit(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
    """Chain ``entries`` onto the stored head inside the caller's transaction."""
    if not entries:
        return []
    row = conn.execute("SELECT record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    head = None if row is None else AuditRecord.from_json(json.loads(row[0]))
    records = link_all(entries, head=head)
    conn.executemany(
        "INSERT INTO audit (seq, hash, record) VALUES (?, ?, ?)",
        [(r.seq, r.hash, json.dumps(r.to_json(), ensure_ascii=False)) for r in records],
    )
    return records


class SqliteStore:
    """A ``StateStore`` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

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
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise sqlite3.DatabaseError(
                f"{self._path} has schema version {version}, newer than this signer's "
                f"{SCHEMA_VERSION}"
            )
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return conn

    async def keys(self, ring: str | None = None) -> list[KeyRecord]:
        """Every key record (of ``ring``), oldest first."""

        def query(conn: sqlite3.Connection) -> list[KeyRecord]:
            if ring is None:
                rows = conn.execute("SELECT * FROM keys ORDER BY seq").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM keys WHERE ring = ? ORDER BY seq", (ring,)
                ).fetchall()
            return [_from_row(row) for row in rows]

        return await self._run(query)

    async def get_key(self, kid: KeyId) -> KeyRecord | None:
        """The record of ``kid``, if any."""

        def query(conn: sqlite3.Connection) -> KeyRecord | None:
            row = conn.execute("SELECT * FROM keys WHERE kid = ?", (kid,)).fetchone()
            return None if row is None else _from_row(row)

        return await self._run(query)

    async def insert_key(self, record: KeyRecord, *, audit: Sequence[AuditEntry] = ()) -> None:
        """Add a new key (and its audit records, in the same transaction)."""
        columns = ", ".join(_COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM keys").fetchone()[0]
                conn.execute(
                    f"INSERT INTO keys ({columns}, seq) VALUES ({marks}, ?)",  # noqa: S608 -- fixed column names
                    (*_to_row(record), seq),
                )
                _append_audit(conn, audit)

        await self._run(insert)

    async def update_keys(
        self, updates: Sequence[KeyUpdate], *, audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Apply all updates (and their audit records) atomically, or none: ``StaleWrite``."""
        assignments = ", ".join(f"{c} = ?" for c in _COLUMNS if c != "kid")

        def update(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for item in updates:
                    row = _to_row(item.record)
                    cursor = conn.execute(
                        f"UPDATE keys SET {assignments} WHERE kid = ? AND state = ?",  # noqa: S608 -- fixed column names
                        (*row[1:], item.record.kid, item.expected.value),
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

    async def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Chain and commit ``entries`` in one transaction (a group commit); return them."""

        def append(conn: sqlite3.Connection) -> list[AuditRecord]:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                return _append_audit(conn, entries)

        return await self._run(append)

    async def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Records with ``seq > after`` in order, at most ``limit``."""

        def query(conn: sqlite3.Connection) -> list[AuditRecord]:
            rows = conn.execute(
                "SELECT record FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, -1 if limit is None else limit),
            ).fetchall()
            return [AuditRecord.from_json(json.loads(row[0])) for row in rows]

        return await self._run(query)

    async def audit_last(self, *, action: str | None = None) -> AuditRecord | None:
        """The newest audit record (of ``action``), if any."""

        def query(conn: sqlite3.Connection) -> AuditRecord | None:
            if action is None:
                row = conn.execute("SELECT record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            else:
                row = conn.execute(
                    "SELECT record FROM audit WHERE json_extract(record, '$.action') = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (action,),
                ).fetchone()
            return None if row is None else AuditRecord.from_json(json.loads(row[0]))

        return await self._run(query)

    async def audit_raw(self, *, after: int = 0) -> list[str]:
        """The stored JSON of each record with ``seq > after``, unparsed, for verification."""

        def query(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT record FROM audit WHERE seq > ? ORDER BY seq", (after,)
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._run(query)

    async def insert_approval(
        self, request: ApprovalRequest, *, audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Add a new approval request (and its audit records) atomically."""

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO approvals (id, state, version, created_at, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        request.id,
                        request.state.value,
                        request.version,
                        request.created_at,
                        json.dumps(approval_json(request)),
                    ),
                )
                _append_audit(conn, audit)

        await self._run(insert)

    async def update_approval(
        self,
        request: ApprovalRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Replace a request if it is still at ``expected_version``; else ``StaleWrite``."""

        def update(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.execute(
                    "UPDATE approvals SET state = ?, version = ?, body = ? "
                    "WHERE id = ? AND version = ?",
                    (
                        request.state.value,
                        request.version,
                        json.dumps(approval_json(request)),
                        request.id,
                        expected_version,
                    ),
                )
                if cursor.rowcount != 1:
                    raise StaleWrite(f"approval {request.id} changed concurrently")
                _append_audit(conn, audit)

        await self._run(update)

    async def get_approval(self, approval_id: str) -> ApprovalRequest | None:
        """One approval request, if it exists."""

        def query(conn: sqlite3.Connection) -> ApprovalRequest | None:
            row = conn.execute("SELECT body FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            return None if row is None else approval_from_json(json.loads(row[0]))

        return await self._run(query)

    async def approvals(self, *, state: str | None = None) -> list[ApprovalRequest]:
        """Approval requests (in ``state``), oldest first."""

        def query(conn: sqlite3.Connection) -> list[ApprovalRequest]:
            if state is None:
                rows = conn.execute("SELECT body FROM approvals ORDER BY created_at").fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM approvals WHERE state = ? ORDER BY created_at", (state,)
                ).fetchall()
            return [approval_from_json(json.loads(row[0])) for row in rows]

        return await self._run(query)

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

    async def try_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        """Take or extend lease ``name`` for ``owner`` until ``now + ttl``, unless another
        owner holds it unexpired."""

        def acquire(conn: sqlite3.Connection) -> bool:
            key = f"lease:{name}"
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    holder = json.loads(row[0])
                    if holder["owner"] != owner and holder["expires"] > now:
                        return False
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps({"owner": owner, "expires": now + ttl})),
                )
                return True

        return await self._run(acquire)

    async def aping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._closed:
            return

        def close(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            await self._run(close)
            self._conn = None
        self._closed = True
        self._executor.shutdown(wait=True)
