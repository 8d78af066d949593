"""Per-principal rate limits: a token bucket per principal, refilled continuously.

A principal configured with ``rate_limit = "200/s"`` may burst up to 200 requests and then make
200 per second. A refused request gets ``429`` with ``Retry-After`` (whole seconds until the next
request would pass, at least 1).

With ``[server] workers = N`` the limit is the node's, not each worker's: the workers keep their
buckets in one small file the supervisor's directory holds (``SharedBuckets``), each bucket
read and written under a lock on its own bytes, so a principal spreading its connections over
the workers still gets one budget. Replicas behind a load balancer each enforce the limit on
their own share of the traffic.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from signer.errors import RateLimited
from signer.settings import PrincipalSettings, RateLimit

# A bucket: tokens left, and when it was last refilled (0.0: never used, so full).
_BUCKET = struct.Struct("<dd")
RATE_LIMIT_FILE = "rate-limits"  # in the workers' shared directory


def take(
    tokens: float, updated: float, now: float, limit: RateLimit
) -> tuple[float, float, int | None]:
    """Refill a bucket from ``updated`` to ``now`` and spend one token if there is one.

    Returns the bucket's new ``tokens`` and ``updated``, and ``None`` if the request may pass,
    else the whole seconds until it would (at least 1). A refused request spends nothing.
    """
    capacity = float(limit.count)
    rate = limit.count / limit.per_seconds  # tokens per second
    refilled = max(0.0, now - updated) * rate
    tokens = capacity if updated == 0.0 else min(capacity, tokens + refilled)
    if tokens >= 1:
        return tokens - 1, now, None
    return tokens, now, max(1, math.ceil((1 - tokens) / rate))


class Buckets(Protocol):
    """Where the buckets live: slot ``i`` is the ``i``-th limited principal's."""

    def spend(self, slot: int, now: float, limit: RateLimit) -> int | None:
        """``take`` on slot ``slot``, atomically; ``None`` or the seconds to wait."""
        ...

    def close(self) -> None:
        """Release what the buckets hold."""
        ...


class LocalBuckets:
    """The buckets of one process."""

    def __init__(self, count: int) -> None:
        self._buckets = [(0.0, 0.0)] * count

    def spend(self, slot: int, now: float, limit: RateLimit) -> int | None:
        """``take`` on slot ``slot``."""
        tokens, updated, wait = take(*self._buckets[slot], now, limit)
        self._buckets[slot] = (tokens, updated)
        return wait

    def close(self) -> None:
        """Nothing to release."""


class SharedBuckets:
    """The buckets of every worker of one node, in a file they all map.

    Each bucket is 16 bytes; a worker spends from one under an exclusive ``fcntl`` lock on
    just those bytes (a few microseconds, held by nobody for longer), which the kernel releases
    if the process dies. A zeroed bucket is a full one, so the file needs no set-up.
    """

    def __init__(self, path: Path, count: int) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = max(1, count) * _BUCKET.size
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # every worker asks for the same size
        self._map = mmap.mmap(self._fd, size)

    def spend(self, slot: int, now: float, limit: RateLimit) -> int | None:
        """``take`` on slot ``slot`` under a lock that every worker's spend respects."""
        offset = slot * _BUCKET.size
        fcntl.lockf(self._fd, fcntl.LOCK_EX, _BUCKET.size, offset)
        try:
            tokens, updated = _BUCKET.unpack_from(self._map, offset)
            tokens, updated, wait = take(tokens, updated, now, limit)
            _BUCKET.pack_into(self._map, offset, tokens, updated)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, _BUCKET.size, offset)
        return wait

    def close(self) -> None:
        """Unmap and close the file."""
        self._map.close()
        os.close(self._fd)


class RateLimiter:
    """Token buckets for the principals that have a ``rate_limit``."""

    def __init__(
        self,
        principals: Sequence[PrincipalSettings],
        clock: Callable[[], float],
        *,
        shared: Path | None = None,
    ) -> None:
        """``shared``: the file the workers of one node keep their buckets in (else this
        process keeps its own)."""
        self._clock = clock
        limited = sorted((p.name, p.rate_limit) for p in principals if p.rate_limit is not None)
        # Slots by name order: every worker reads the same settings, so the same slots.
        self._limits = {name: (slot, limit) for slot, (name, limit) in enumerate(limited)}
        self._buckets: Buckets = (
            LocalBuckets(len(limited)) if shared is None else SharedBuckets(shared, len(limited))
        )

    def check(self, principal: str) -> None:
        """Spend one request of ``principal``'s budget, or raise ``RateLimited``."""
        found = self._limits.get(principal)
        if found is None:
            return
        slot, limit = found
        wait = self._buckets.spend(slot, self._clock(), limit)
        if wait is not None:
            raise RateLimited(
                f"principal {principal!r} is over its rate limit of {limit.count} per "
                f"{limit.per_seconds}s",
                retry_after=wait,
            )

    def close(self) -> None:
        """Release the buckets (the shared file's mapping)."""
        self._buckets.close()
