"""The Redis client under the store: connecting, error translation, the change subscription.

Kept apart from ``redis`` (the store's data operations) so that module reads as the
``StateStore`` contract alone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.typing import EncodableT

from signer.errors import StoreError, StoreUnavailable
from signer.store.base import ANY_RING
from signer.store.redis_url import SENTINEL_SCHEME, parse_sentinel_url

log = logging.getLogger("signer.store.redis")

SOCKET_TIMEOUT_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 2.0
MAX_CONNECTIONS: Final = 64  # per process; the store queues commands beyond it
RESUBSCRIBE_S: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
POLL_S: Final = 1.0  # how often a subscriber looks up from the channel to see the store closed

# Refusals that pass once the server recovers: a demoted master after a failover (READONLY), a
# full memory, a failed disk write (MISCONF), a replica without its master (MASTERDOWN), too few
# replicas for min-replicas-to-write (NOREPLICAS), a server still loading its data or busy with
# a long script (BUSY).
_TRANSIENT = (ReadOnlyError, OutOfMemoryError, MasterDownError, TryAgainError)
_TRANSIENT_CODES = frozenset(
    {"MISCONF", "NOREPLICAS", "LOADING", "BUSY", "READONLY", "OOM", "MASTERDOWN"}
)
# The error code a refusal starts with; inside MULTI the client words it "Command # N (<the
# command>) of pipeline caused error: ('NOREPLICAS ...',)", so the code follows the last
# "caused error: ", quoted.
_CODE = re.compile(r"(?:^|.*caused error: \(?['\"]?)([A-Z]+)\b", re.DOTALL)


@contextmanager
def redis_errors() -> Iterator[None]:
    """Translate the client's errors into the store's: unreachable, timed out or refusing for
    now is ``StoreUnavailable`` (503); a command the server rejects as wrong is ``StoreError``."""
    # The client's message names hosts and ports: it goes to the log, and the problem a caller
    # sees says only what kind of failure it was.
    try:
        yield
    except ResponseError as exc:
        _log_throttled("Redis refused a command: %s", exc)
        if isinstance(exc, _TRANSIENT) or _kind(exc) in _TRANSIENT_CODES:
            raise StoreUnavailable(f"Redis store unavailable ({_kind(exc)})") from exc
        raise StoreError(f"Redis store error ({_kind(exc)})") from exc
    except (RedisError, OSError) as exc:
        _log_throttled("Redis store unavailable: %s", exc)
        raise StoreUnavailable(f"Redis store unavailable ({type(exc).__name__})") from exc


_LOG_EVERY_S: Final = 5.0
_last_logged = 0.0


def _log_throttled(message: str, exc: Exception) -> None:
    """One warning per few seconds: an outage under load fails thousands of calls a second."""
    global _last_logged  # noqa: PLW0603 -- one throttle per process, like the logger
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_S:
        _last_logged = now
        log.warning(message, exc)


def _kind(exc: ResponseError) -> str:
    """The error code Redis starts a refusal with (READONLY, OOM, MISCONF, ERR, …)."""
    found = _CODE.match(str(exc))
    return found.group(1) if found else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Connection:
    """A client for the store's database, and the Sentinel handle that found it (if any)."""

    client: aioredis.Redis
    sentinel: Sentinel | None = None

    async def aclose(self) -> None:
        """Close every connection, the Sentinels' included."""
        await self.client.aclose(close_connection_pool=True)
        if self.sentinel is not None:
            for sentinel in self.sentinel.sentinels:
                await sentinel.aclose()


def connect(url: str, *, password: str | None = None) -> Connection:
    """A (lazily connecting) client for a ``redis_url`` form; ``password`` if the URL has none."""
    options: dict[str, Any] = {
        "decode_responses": True,  # every value the store writes is text
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        # A dropped connection is retried twice, briefly; longer outages surface as 503s.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        "health_check_interval": 30,
        "max_connections": MAX_CONNECTIONS,
    }
    if url.startswith(SENTINEL_SCHEME):
        target = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        client = sentinel.master_for(
            target.service,
            db=target.db,
            username=target.username,
            password=target.password or password,
            **options,
        )
        return Connection(client, sentinel)
    if password is not None:
        options["password"] = password  # a password in the URL still wins
    return Connection(aioredis.from_url(url, **options))


async def change_feed(
    client: aioredis.Redis, channel: str, closing: asyncio.Event
) -> AsyncGenerator[str, None]:
    """Yield each message on ``channel`` until ``closing`` is set, across outages.

    The subscription is made again (with backoff) once the server is back, and then
    ``ANY_RING`` is yielded, because whatever was published meanwhile is lost.
    """
    missed, failures = False, 0
    while not closing.is_set():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        reconnects = _Reconnects()
        try:
            await pubsub.subscribe(channel)
            # The client also reconnects and re-subscribes by itself (its retry policy), with
            # no error reaching this loop: each such reconnect is a gap too.
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(reconnects.seen)
            if missed:
                log.info("change feed resubscribed")
                yield ANY_RING
            missed, failures = False, 0
            while not closing.is_set():
                message = await pubsub.get_message(timeout=POLL_S)
                if reconnects.take() and not closing.is_set():
                    log.info("change feed reconnected; changes may have been missed")
                    yield ANY_RING
                if message is not None and message.get("type") == "message":
                    yield text(message["data"])
        except (RedisError, OSError) as exc:
            if not missed:
                log.warning("change feed lost (%s); resubscribing", exc)
            missed = True
        finally:
            if pubsub.connection is not None:
                pubsub.connection.deregister_connect_callback(reconnects.seen)
            await _close_quietly(pubsub)
        delay = RESUBSCRIBE_S[min(failures, len(RESUBSCRIBE_S) - 1)]
        failures += 1
        try:
            await asyncio.wait_for(closing.wait(), timeout=delay)
        except TimeoutError:
            continue


class _Reconnects:
    """Counts the connects of a subscription's connection after it was first made (the client
    keeps only a weak reference to the callback, so it is a method of an object kept here)."""

    def __init__(self) -> None:
        self._count = 0

    async def seen(self, _connection: object) -> None:
        """A connect callback: the connection was made again."""
        self._count += 1

    def take(self) -> bool:
        """Whether it reconnected since the last call."""
        seen, self._count = self._count > 0, 0
        return seen


async def _close_quietly(pubsub: PubSub) -> None:
    # A subscription on a dead connection cannot say goodbye; dropping it is all that is left.
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    except (RedisError, OSError):
        log.debug("closing a broken subscription failed", exc_info=True)


# The client decodes responses (decode_responses=True); its types cannot know that.


def text(value: bytes | str) -> str:
    """A response value as text."""
    return value if isinstance(value, str) else value.decode()


def opt_text(value: bytes | str | None) -> str | None:
    """An optional response value as text."""
    return None if value is None else text(value)


def texts(values: Sequence[Any]) -> list[str]:
    """A list response as text."""
    return [text(v) for v in values]


def row(values: Mapping[Any, Any]) -> dict[str, str]:
    """A hash response as text."""
    return {text(k): text(v) for k, v in values.items()}


def fields(values: Mapping[str, str]) -> dict[EncodableT, EncodableT]:
    """Hash fields, typed as the client wants them."""
    return {k: v for k, v in values.items()}  # noqa: C416 -- retyped for the client
