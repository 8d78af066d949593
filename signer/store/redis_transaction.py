"""Commit-once for the Redis store's optimistic transactions (``RedisStore._transact``).

Each attempt's ``MULTI`` also sets a marker key of its own, ``txn:<random id>`` (``redis_schema``),
which the attempt watches too. When its ``EXEC`` fails without a clear answer (the reply lost to
a dropped or timed-out connection, which redis-py 8 reports as ``WatchError`` while watching),
``committed`` asks the server on another connection whether the marker is there. The question
also settles the answer for good: if the marker is absent it writes an abandoned marker in its
place, and since the attempt watches that key, an ``EXEC`` of it still queued at the server fails
rather than land after the store has decided to run the transaction again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as ConnectionLost
from redis.exceptions import TimeoutError as TimedOut
from redis.exceptions import WatchError

from signer.errors import StoreUnavailable
from signer.store.redis_client import opt_text, redis_errors
from signer.store.redis_schema import Names

T = TypeVar("T")

Queue: TypeAlias = Callable[[Pipeline], None]  # queues a transaction's writes after MULTI
# Reads and checks under WATCH; returns the transaction's result and what to queue.
Prepare: TypeAlias = Callable[[Pipeline], Awaitable[tuple[T, Queue]]]

# How an EXEC can fail while the server may have run it: a conflict (EXEC answered nil), and the
# redis-py 8 translation of a connection error or timeout while watching
# (``Pipeline._disconnect_raise_on_watching``) are both ``WatchError``; the connection errors
# themselves are listed too in case a client version lets them through.
UNKNOWN_OUTCOME: Final = (WatchError, ConnectionLost, TimedOut, OSError)

COMMITTED: Final = "1"  # what the transaction's own marker SET writes
ABANDONED: Final = "0"  # what ``committed`` writes in its place when it did not commit
# Outlives any EXEC still queued at the server by far, and then leaves nothing behind.
MARKER_TTL_MS: Final = 60_000
# Pauses between asking again while the server is unreachable (each ask is also retried twice
# by the client itself); after them the outcome stays unknown.
RESOLVE_DELAYS_S: Final = (0.1, 0.25, 0.5, 1.0)


def new_marker(names: Names) -> str:
    """A fresh marker key for one transaction attempt."""
    return names.txn(secrets.token_hex(16))


def queue_marker(pipe: Pipeline, marker: str) -> None:
    """Queue the marker's write, committed with the transaction's writes or not at all."""
    pipe.set(marker, COMMITTED, px=MARKER_TTL_MS)


async def committed(client: aioredis.Redis, marker: str) -> bool:
    """Whether the attempt that queued ``marker`` committed; if it has not, it never will.

    ``StoreUnavailable`` if the server cannot be asked: then the outcome is unknown, and running
    the transaction again could commit it twice.
    """
    unreachable: StoreUnavailable | None = None
    for delay in (0.0, *RESOLVE_DELAYS_S):
        await asyncio.sleep(delay)
        try:
            with redis_errors():
                # SET NX then GET is idempotent, so the client may send it again on a lost reply.
                async with client.pipeline(transaction=True) as pipe:
                    pipe.set(marker, ABANDONED, nx=True, px=MARKER_TTL_MS)
                    pipe.get(marker)
                    _, value = await pipe.execute()
        except StoreUnavailable as exc:
            unreachable = exc
            continue
        return opt_text(value) == COMMITTED
    raise StoreUnavailable(
        "Redis store unreachable after a transaction's EXEC: it may or may not have committed"
    ) from unreachable
