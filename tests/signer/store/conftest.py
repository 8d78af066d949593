"""Stores under test: every adapter runs the same conformance suite.

Redis tests share one ``redis-server`` per session; each test gets a fresh key prefix, which
isolates it as a FLUSHDB would and also proves that deployments sharing a Redis stay apart.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from signer.approvals.rules import ApprovalId, ApprovalPolicy, ApprovalRequest, new_request
from signer.store.base import StateStore
from signer.store.redis import RedisStore
from signer.store.sqlite import SqliteStore
from tests.redis_server import RedisServer, shared_redis_server

# Another handle on the same store, as a second process or replica would open it.
Reopen = Callable[[], Awaitable[StateStore]]


def approval_request() -> ApprovalRequest:
    """A pending approval request ``apr_1`` of a one-vote policy."""
    policy = ApprovalPolicy(group="g", members=frozenset({"a", "b"}), required=1)
    return new_request(
        id=ApprovalId("apr_1"),
        operation="op",
        target="t",
        requester="r",
        policy=policy,
        now=100,
        ttl=60,
        details={},
    )


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """One real redis-server for the session (append-only, fsync always; stopped at exit)."""
    return shared_redis_server()


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which adapter a parametrised test runs on."""
    return str(request.param)


@pytest.fixture
async def reopen(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Reopen]:
    """Open handles on one fresh, empty store of the kind under test; all closed after."""
    opened: list[StateStore] = []
    prefix = f"t{secrets.token_hex(6)}:"

    async def open_one() -> StateStore:
        adapter: StateStore
        if store_kind == "sqlite":
            adapter = SqliteStore(tmp_path / "state.db")
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            adapter = RedisStore.from_url(server.url, prefix=prefix)
        opened.append(adapter)
        return adapter

    yield open_one
    for adapter in opened:
        await adapter.aclose()


@pytest.fixture
async def store(reopen: Reopen) -> StateStore:
    """A fresh, empty store of each kind."""
    return await reopen()
