"""Per-principal token buckets."""

from __future__ import annotations

import hashlib

import pytest

from signer.errors import RateLimited
from signer.ratelimit import RateLimiter
from signer.settings import PrincipalSettings, RateLimit
from tests.fakes import MovingClock


def limiter(clock: MovingClock, count: int = 3, per: int = 1) -> RateLimiter:
    limited = PrincipalSettings(
        name="idp",
        token_sha256=hashlib.sha256(b"x").digest(),
        permissions=(),
        rate_limit=RateLimit(count=count, per_seconds=per),
    )
    free = PrincipalSettings(
        name="free", token_sha256=hashlib.sha256(b"y").digest(), permissions=()
    )
    return RateLimiter([limited, free], clock)


def test_allows_a_burst_up_to_the_limit_then_refuses_with_retry_after() -> None:
    clock = MovingClock(1000.0)
    limits = limiter(clock, count=3, per=60)
    for _ in range(3):
        limits.check("idp")
    with pytest.raises(RateLimited) as info:
        limits.check("idp")
    assert info.value.status == 429
    assert info.value.retry_after == 20  # one request every 20 s at 3/min


def test_budget_refills_with_time() -> None:
    clock = MovingClock(1000.0)
    limits = limiter(clock, count=2, per=1)
    limits.check("idp")
    limits.check("idp")
    with pytest.raises(RateLimited):
        limits.check("idp")
    clock.now += 0.5  # one request's worth at 2/s
    limits.check("idp")
    with pytest.raises(RateLimited):
        limits.check("idp")


def test_refused_requests_do_not_spend_budget() -> None:
    clock = MovingClock(1000.0)
    limits = limiter(clock, count=1, per=10)
    limits.check("idp")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limits.check("idp")
    clock.now += 10
    limits.check("idp")


def test_principals_without_a_limit_are_never_refused() -> None:
    limits = limiter(MovingClock(1000.0), count=1)
    for _ in range(1000):
        limits.check("free")
