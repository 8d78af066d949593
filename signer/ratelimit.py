"""Per-principal rate limits: a token bucket per principal, refilled continuously.

A principal configured with ``rate_limit = "200/s"`` may burst up to 200 requests and then make
200 per second. A refused request gets ``429`` with ``Retry-After`` (whole seconds until the next
request would pass, at least 1). Buckets live in the process: with N workers or replicas each
enforces the limit on its own share of traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from signer.errors import RateLimited
from signer.settings import PrincipalSettings, RateLimit


@dataclass(slots=True)
class _Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets for the principals that have a ``rate_limit``."""

    def __init__(self, principals: Sequence[PrincipalSettings], clock: Callable[[], float]) -> None:
        self._clock = clock
        self._limits: dict[str, RateLimit] = {
            p.name: p.rate_limit for p in principals if p.rate_limit is not None
        }
        self._buckets: dict[str, _Bucket] = {}

    def check(self, principal: str) -> None:
        """Spend one request of ``principal``'s budget, or raise ``RateLimited``."""
        limit = self._limits.get(principal)
        if limit is None:
            return
        now = self._clock()
        bucket = self._buckets.get(principal)
        if bucket is None:
            bucket = _Bucket(
                capacity=limit.count,
                rate=limit.count / limit.per_seconds,
                tokens=limit.count,
                updated=now,
            )
            self._buckets[principal] = bucket
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(bucket.capacity, bucket.tokens + elapsed * bucket.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        retry_after = max(1, math.ceil((1 - bucket.tokens) / bucket.rate))
        raise RateLimited(
            f"principal {principal!r} is over its rate limit of {limit.count} per "
            f"{limit.per_seconds}s",
            retry_after=retry_after,
        )
