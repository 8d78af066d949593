"""The SQLite store's tables and how a key record maps onto a row of ``keys``."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from jwks.algorithms import Alg
from jwks.records import KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId

SCHEMA_VERSION = 1
SCHEMA = """
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
-- Signing requests (signer.codesign): the record's JSON; state and version are indexed copies.
CREATE TABLE IF NOT EXISTS signing_requests (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signing_requests_by_state ON signing_requests (state, created_at);
"""
COLUMNS = (
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


def to_row(record: KeyRecord) -> tuple[Any, ...]:
    """The ``keys`` row of ``record``, in ``COLUMNS`` order."""
    values = {name: getattr(record, name) for name in COLUMNS}
    values["jwk"] = json.dumps(dict(record.jwk), sort_keys=True)
    values["alg"] = record.alg.value
    values["state"] = record.state.value
    return tuple(values[name] for name in COLUMNS)


def from_row(row: sqlite3.Row) -> KeyRecord:
    """The record a ``keys`` row holds."""
    values = {name: row[name] for name in COLUMNS}
    values["jwk"] = json.loads(row["jwk"])
    values["alg"] = Alg(row["alg"])
    values["state"] = KeyState(row["state"])
    values["kid"] = KeyId(row["kid"])
    values["ring"] = RingName(row["ring"])
    values["emergency"] = bool(row["emergency"])
    return KeyRecord(**values)
