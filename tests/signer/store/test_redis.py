"""What only the Redis store does: its change feed, outages, lost ``EXEC`` replies, prefixes,
URLs and selection."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as ConnectionLost
from redis.exceptions import TimeoutError as TimedOut
from redis.exceptions import WatchError

from jwks.records import KeyState
from jwks.thumbprint import KeyId
from signer.approvals.rules import Decision, Vote, vote
from signer.audit.chaincheck import verify_chain
from signer.errors import StoreUnavailable
from signer.settings import StoreSettings
from signer.store import open_store
from signer.store.base import ANY_RING, KeyUpdate
from signer.store.redis import RedisStore
from signer.store.redis_client import connect
from signer.store.redis_schema import Names
from signer.store.redis_transaction import committed, new_marker, queue_marker
from signer.store.redis_url import SentinelTarget, check_redis_url, parse_sentinel_url
from signer.store.sqlite import SqliteStore
from tests.redis_server import RedisServer, start_redis_server
from tests.signer.codesign.conftest import make_request
from tests.signer.store.conftest import approval_request
from tests.signer.store.test_conformance import audit_entry, record

WAIT_S = 5.0


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own for each test: an empty store on the shared server."""
    return f"t{secrets.token_hex(6)}:"


@pytest.fixture
async def redis_store(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_server.url, prefix=prefix)
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


async def test_a_subscription_reconnected_by_the_client_says_changes_were_missed(
    redis_server: RedisServer, prefix: str
) -> None:
    """The client re-subscribes a dropped subscription by itself, and what was published in the
    gap is gone: the feed must say so (ANY_RING) rather than wait for the next re-read."""
    watcher = RedisStore.from_url(redis_server.url, prefix=prefix)
    writer = RedisStore.from_url(redis_server.url, prefix=prefix)
    admin = connect(redis_server.url).client
    changes = watcher.watch_changes()
    try:
        first = asyncio.ensure_future(next_change(changes))
        await asyncio.sleep(0.2)
        await writer.insert_key(record("k0", KeyState.PENDING, ring="before"))
        assert await first == "before"
        async with admin.pipeline(transaction=True) as pipe:  # dropped, and a change meanwhile
            pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            pipe.publish(Names(prefix).changes, "during-the-gap")
            assert (await pipe.execute())[0] >= 1
        assert await next_change(changes) == ANY_RING
        await writer.insert_key(record("k1", KeyState.PENDING, ring="after"))
        assert await next_change(changes) == "after"
    finally:
        await changes.aclose()
        await watcher.aclose()
        await writer.aclose()
        await admin.aclose()


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


async def test_too_few_replicas_refuses_audited_writes_as_unavailable(tmp_path: Path) -> None:
    """``min-replicas-to-write`` (deployment.md) refuses a write inside MULTI, where the client
    words the refusal "Command # N (...) of pipeline caused error: NOREPLICAS ...": still a
    503 that passes when a replica catches up, not a 500."""
    server = start_redis_server(tmp_path)
    store = RedisStore.from_url(server.url)
    admin = connect(server.url).client
    try:
        await admin.config_set("min-replicas-to-write", 1)
        with pytest.raises(StoreUnavailable, match="NOREPLICAS"):
            await store.insert_key(record("k1"), audit=[audit_entry("key.generate")])
        with pytest.raises(StoreUnavailable, match="NOREPLICAS"):
            await store.append_audit([audit_entry("jwt.sign")])
        await admin.config_set("min-replicas-to-write", 0)
        await store.append_audit([audit_entry("jwt.sign")])
        assert [r.action for r in await store.audit_records()] == ["jwt.sign"]
    finally:
        await admin.aclose()
        await store.aclose()
        server.stop()


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
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://u:p@h:6380",
        "unix:///run/redis.sock?db=2",
        "redis://[::1]:6379/0",
        "redis://[::1]/0",
        "redis://:pa%2Fss@Redis.Internal:6379/0?health_check_interval=2",
        "redis://redis.internal",
    ],
)
def test_direct_redis_urls_are_accepted(url: str) -> None:
    check_redis_url(url)


@pytest.mark.parametrize("password", ["xq/zv", "xq?zv", "xq#zv", "/xqzv", "1234/xqzv", "xq@zv/"])
def test_a_password_that_breaks_the_url_is_refused_without_quoting_it(password: str) -> None:
    """The client would fail later with "Port could not be cast to integer value as 'xq'"."""
    with pytest.raises(ValueError, match="percent-encode") as refused:
        check_redis_url(f"redis://:{password}@redis.internal:6379/0")
    assert "xq" not in str(refused.value)
    assert "zv" not in str(refused.value)
    encoded = password.replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
    check_redis_url(f"redis://:{encoded}@redis.internal:6379/0")


async def test_open_store_picks_the_adapter_from_the_url(tmp_path: Path) -> None:
    sqlite = open_store(StoreSettings(url="sqlite://x.db", sqlite_path=tmp_path / "x.db"))
    redis = open_store(StoreSettings(url="redis://127.0.0.1:1/0", sqlite_path=None))
    assert isinstance(sqlite, SqliteStore)
    assert isinstance(redis, RedisStore)
    assert redis.replicated
    assert not sqlite.replicated
    await sqlite.aclose()
    await redis.aclose()


# A lost EXEC reply: the server ran the transaction, the client never heard. redis-py 8 reports a
# connection dropped or timed out while watching as WatchError (_disconnect_raise_on_watching);
# the plain connection errors are what a client that let them through would raise.
LOST_REPLY_ERRORS = [
    WatchError("A ConnectionError occurred while watching one or more keys"),
    ConnectionLost("Connection closed by server."),
    TimedOut("Timeout reading from 127.0.0.1"),
]


@dataclass
class LostReplies:
    """Makes the store's next transactions (MULTI after WATCH) really commit, then fail."""

    error: Exception
    armed: int = 0  # replies still to lose
    execs: int = 0  # store transactions sent
    before: Callable[[], Awaitable[None]] | None = None  # runs once, just before the next EXEC
    after: Callable[[], None] | None = None  # runs once a lost reply's EXEC has committed

    def arm(self, times: int = 1) -> None:
        self.armed = times


@pytest.fixture(params=LOST_REPLY_ERRORS, ids=lambda e: type(e).__name__)
def lost_replies(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LostReplies:
    losses = LostReplies(error=request.param)
    real = Pipeline.execute

    async def execute(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        if not (self.watching and self.explicit_transaction):  # a read, or the marker question
            return await real(self, raise_on_error)
        losses.execs += 1
        if (before := losses.before) is not None:
            losses.before = None
            await before()
        response = await real(self, raise_on_error)
        if losses.armed:
            losses.armed -= 1
            if (after := losses.after) is not None:
                losses.after = None
                after()
            raise type(losses.error)(*losses.error.args)  # a fresh one each time
        return response

    monkeypatch.setattr(Pipeline, "execute", execute)
    return losses


async def test_lost_reply_on_an_audit_append_keeps_one_copy_and_returns_it(
    redis_store: RedisStore, lost_replies: LostReplies
) -> None:
    await redis_store.append_audit([audit_entry("first")])
    sent = lost_replies.execs
    lost_replies.arm()
    appended = await redis_store.append_audit([audit_entry("a", n) for n in range(3)])
    assert [r.seq for r in appended] == [2, 3, 4]
    records = await redis_store.audit_records()
    assert records[1:] == appended
    assert verify_chain(await redis_store.audit_raw()).ok
    assert lost_replies.execs == sent + 1  # committed, asked about, not run again


async def test_lost_reply_on_an_approval_insert_is_not_a_stale_write(
    redis_store: RedisStore, lost_replies: LostReplies
) -> None:
    request = approval_request()
    lost_replies.arm()
    await redis_store.insert_approval(request, audit=[audit_entry("approval.request")])
    assert await redis_store.get_approval(request.id) == request
    assert [r.action for r in await redis_store.audit_records()] == ["approval.request"]


async def test_lost_reply_on_a_key_update_applies_it_once(
    redis_store: RedisStore, lost_replies: LostReplies
) -> None:
    """The compare-and-set is not refused by its own first write."""
    pending = record("k1", KeyState.PENDING)
    await redis_store.insert_key(pending)
    active = pending.with_state(KeyState.ACTIVE, 200)
    sent = lost_replies.execs
    lost_replies.arm()
    await redis_store.update_keys(
        [KeyUpdate(record=active, expected=KeyState.PENDING)],
        audit=[audit_entry("key.activate")],
    )
    assert await redis_store.get_key(KeyId("k1")) == active
    assert [r.action for r in await redis_store.audit_records()] == ["key.activate"]
    assert lost_replies.execs == sent + 1


Write = Callable[[RedisStore], Awaitable[object]]
WRITTEN = [audit_entry("write")]


async def no_setup(store: RedisStore) -> None:
    del store


async def insert_approval(store: RedisStore) -> None:
    await store.insert_approval(approval_request())


async def approve(store: RedisStore) -> None:
    request = approval_request()
    approval = Vote(approver="a", decision=Decision.APPROVE, comment="", at=101)
    approved = vote(request, approval, 101).request
    await store.update_approval(approved, expected_version=request.version, audit=WRITTEN)


async def insert_key(store: RedisStore) -> None:
    await store.insert_key(record("k1"), audit=WRITTEN)


async def insert_signing_request(store: RedisStore) -> None:
    await store.insert_signing_request(make_request(), audit=WRITTEN)


async def set_meta(store: RedisStore) -> None:
    await store.set_meta("m", "v", audit=WRITTEN)


@pytest.mark.parametrize(
    ("setup", "write"),
    [
        (no_setup, insert_key),
        (insert_approval, approve),
        (no_setup, insert_signing_request),
        (no_setup, set_meta),
    ],
    ids=["insert_key", "update_approval", "insert_signing_request", "set_meta"],
)
async def test_every_write_commits_once_across_a_lost_reply(
    redis_store: RedisStore, lost_replies: LostReplies, setup: Write, write: Write
) -> None:
    await setup(redis_store)
    sent = lost_replies.execs
    lost_replies.arm()
    await write(redis_store)
    assert [r.action for r in await redis_store.audit_records()] == ["write"]
    assert lost_replies.execs == sent + 1


async def test_a_concurrent_write_before_exec_is_still_a_conflict_and_retried(
    redis_server: RedisServer, prefix: str, redis_store: RedisStore, lost_replies: LostReplies
) -> None:
    """Another replica appends between this append's reads and its EXEC: EXEC does nothing,
    the marker says so, and the retry chains after the other replica's record."""
    other = RedisStore.from_url(redis_server.url, prefix=prefix)

    async def intrude() -> None:
        await other.append_audit([audit_entry("other")])

    lost_replies.before = intrude
    try:
        appended = await redis_store.append_audit([audit_entry("mine", n) for n in range(2)])
    finally:
        await other.aclose()
    records = await redis_store.audit_records()
    assert [(r.seq, r.action) for r in records] == [(1, "other"), (2, "mine"), (3, "mine")]
    assert records[1:] == appended
    assert verify_chain(await redis_store.audit_raw()).ok
    assert lost_replies.execs == 3  # ours, the other replica's, ours again


async def test_unresolvable_lost_reply_is_store_unavailable_not_a_retry(
    tmp_path: Path, lost_replies: LostReplies
) -> None:
    """The server goes away right after committing: the outcome is unknown, so the append is
    not run again; once the server is back, the records are there once."""
    server = start_redis_server(tmp_path)
    store = RedisStore.from_url(server.url)
    try:
        lost_replies.after = server.stop
        lost_replies.arm()
        with pytest.raises(StoreUnavailable, match="may or may not have committed"):
            await store.append_audit([audit_entry("a", n) for n in range(2)])
        assert lost_replies.execs == 1
        server.start()
        assert [r.seq for r in await store.audit_records()] == [1, 2]
    finally:
        await store.aclose()
        server.stop()


async def test_commit_markers_expire(
    redis_server: RedisServer, prefix: str, redis_store: RedisStore
) -> None:
    """Each transaction leaves a marker behind, and every marker goes away by itself."""
    client = connect(redis_server.url).client
    try:
        await redis_store.append_audit([audit_entry("a")])
        await redis_store.set_meta("m", "v", audit=[audit_entry("b")])
        markers = [key async for key in client.scan_iter(match=f"{prefix}txn:*")]
        assert len(markers) == 2
        for marker in markers:
            assert 0 < await client.pttl(marker) <= 60_000
    finally:
        await client.aclose()


async def test_an_exec_still_queued_when_asked_about_can_no_longer_commit(
    redis_server: RedisServer, prefix: str
) -> None:
    """A timed-out EXEC may reach the server after the store asked whether it committed: the
    answer "no" must stay true, or the retry would commit the writes a second time."""
    late, asking = connect(redis_server.url).client, connect(redis_server.url).client
    marker = new_marker(Names(prefix))
    try:
        async with late.pipeline(transaction=True) as pipe:
            await pipe.watch(marker, f"{prefix}data")
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(f"{prefix}data", "written")
            queue_marker(pipe, marker)
            assert not await committed(asking, marker)
            with pytest.raises(WatchError, match="Watched variable changed"):
                await pipe.execute()
        assert await asking.get(f"{prefix}data") is None
        assert not await committed(asking, marker)  # and asking again gives the same answer
    finally:
        await late.aclose()
        await asking.aclose()


async def test_redis_py_reports_a_connection_lost_at_exec_as_a_watch_error(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why a WatchError is not always a conflict (redis-py 8, _disconnect_raise_on_watching)."""

    async def drop(*args: object) -> list[Any]:
        raise ConnectionLost("Connection reset by peer")

    monkeypatch.setattr(Pipeline, "_execute_transaction", drop)
    client = connect(redis_server.url).client  # configured as the store's is
    try:
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch("any")
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set("any", "1")
            with pytest.raises(WatchError, match="ConnectionError occurred while watching"):
                await pipe.execute()
    finally:
        await client.aclose()
