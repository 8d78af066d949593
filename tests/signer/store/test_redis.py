"""What only the Redis store does: its change feed, outages, prefixes, URLs and selection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jwks.records import KeyState
from jwks.thumbprint import KeyId
from signer.errors import StoreUnavailable
from signer.settings import StoreSettings
from signer.store import open_store
from signer.store.base import ANY_RING, KeyUpdate
from signer.store.redis import RedisStore
from signer.store.redis_url import SentinelTarget, check_redis_url, parse_sentinel_url
from signer.store.sqlite import SqliteStore
from tests.redis_server import RedisServer, start_redis_server
from tests.signer.store.test_conformance import audit_entry, record

WAIT_S = 5.0


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_server.url, prefix=f"feed{id(redis_server)}:")
    yield store
    await store.aclose()


async def next_change(changes: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(anext(changes), WAIT_S)


async def test_watch_changes_yields_the_ring_of_each_key_write(redis_server: RedisServer) -> None:
    """Another replica's insert and update each reach a subscriber, naming the ring."""
    watcher = RedisStore.from_url(redis_server.url, prefix="feed:")
    writer = RedisStore.from_url(redis_server.url, prefix="feed:")
    other = RedisStore.from_url(redis_server.url, prefix="elsewhere:")
    changes = watcher.watch_changes()
    try:
        first = asyncio.ensure_future(next_change(changes))
        await asyncio.sleep(0.2)  # let the subscription land: pub/sub keeps no backlog
        await other.insert_key(record("k0", ring="other"))  # another deployment: not heard
        await writer.insert_key(record("k1", KeyState.PENDING, ring="blue"))
        assert await first == "blue"
        k2 = record("k2", KeyState.PENDING, ring="green")
        await writer.insert_key(k2)
        assert await next_change(changes) == "green"
        await writer.update_keys(
            [KeyUpdate(record=k2.with_state(KeyState.ACTIVE, 5), expected=KeyState.PENDING)]
        )
        assert await next_change(changes) == "green"
    finally:
        await changes.aclose()
        for store in (watcher, writer, other):
            await store.aclose()


async def test_watch_changes_ends_when_the_store_closes(redis_store: RedisStore) -> None:
    changes = redis_store.watch_changes()
    waiting = asyncio.ensure_future(anext(changes, None))
    await asyncio.sleep(0.1)
    await redis_store.aclose()
    assert await asyncio.wait_for(waiting, WAIT_S) is None


async def test_prefixes_keep_deployments_apart(redis_server: RedisServer) -> None:
    one = RedisStore.from_url(redis_server.url, prefix="one:")
    two = RedisStore.from_url(redis_server.url, prefix="two:")
    try:
        await one.insert_key(record("k1"), audit=[audit_entry("a")])
        await two.insert_key(record("k1"))  # the same kid and active slot, another deployment
        assert len(await one.audit_records()) == 1
        assert await two.audit_records() == []
        assert await two.try_lease("lead", "x", ttl=10, now=0) is not None
        assert await one.try_lease("lead", "y", ttl=10, now=0) is not None
    finally:
        await one.aclose()
        await two.aclose()


async def test_outage_is_store_unavailable_and_the_same_store_recovers(tmp_path: Path) -> None:
    """Server stopped: 503-class errors, the change feed waits; restarted: the same objects work
    again, and the feed says changes may have been missed."""
    server = start_redis_server(tmp_path)
    store = RedisStore.from_url(server.url)
    changes = store.watch_changes()
    try:
        await store.insert_key(record("k1"))
        waiting = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.2)
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get_key(KeyId("k1"))
        with pytest.raises(StoreUnavailable):
            await store.append_audit([audit_entry("a")])
        with pytest.raises(StoreUnavailable):
            await store.aping()
        server.start()  # same port, same append-only file
        assert await asyncio.wait_for(waiting, WAIT_S * 2) == ANY_RING
        assert await store.get_key(KeyId("k1")) == record("k1")  # fsynced before the stop
        await store.insert_key(record("k2", KeyState.PENDING))
        assert await next_change(changes) == "r"
    finally:
        await changes.aclose()
        await store.aclose()
        server.stop()


async def test_closed_store_refuses_calls(redis_store: RedisStore) -> None:
    await redis_store.aclose()
    with pytest.raises(StoreUnavailable, match="closed"):
        await redis_store.keys()


def test_sentinel_url_names_every_sentinel_the_service_and_db() -> None:
    target = parse_sentinel_url("redis+sentinel://:s%40cret@h1:26380,h2,[::1]:26381/mymaster/3")
    assert target == SentinelTarget(
        sentinels=(("h1", 26380), ("h2", 26379), ("::1", 26381)),
        service="mymaster",
        db=3,
        password="s@cret",
    )
    assert "s@cret" not in repr(target)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h1:26379", "service_name"),
        ("redis+sentinel://h1:x/m", "port"),
        ("redis+sentinel://h1/m/zero", "not a number"),
        ("redis+sentinel://h1/m?db=1", "query"),
        ("unix://relative.sock", "absolute"),
        ("redis:///0", "host"),
        ("memcached://h", "expected one of"),
    ],
)
def test_bad_redis_urls_are_refused_precisely(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_redis_url(url)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://u:p@h:6380", "unix:///run/redis.sock?db=2"]
)
def test_direct_redis_urls_are_accepted(url: str) -> None:
    check_redis_url(url)


async def test_open_store_picks_the_adapter_from_the_url(tmp_path: Path) -> None:
    sqlite = open_store(StoreSettings(url="sqlite://x.db", sqlite_path=tmp_path / "x.db"))
    redis = open_store(StoreSettings(url="redis://127.0.0.1:1/0", sqlite_path=None))
    assert isinstance(sqlite, SqliteStore)
    assert isinstance(redis, RedisStore)
    assert redis.replicated
    assert not sqlite.replicated
    await sqlite.aclose()
    await redis.aclose()
