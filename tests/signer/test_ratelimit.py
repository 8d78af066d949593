"""Per-principal token buckets, kept by one process or shared by a node's workers."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from signer.errors import RateLimited
from signer.ratelimit import RateLimiter
from signer.settings import PrincipalSettings, RateLimit
from tests.fakes import MovingClock


def principals(count: int, per: int) -> list[PrincipalSettings]:
    limited = PrincipalSettings(
        name="idp",
        token_sha256=hashlib.sha256(b"x").digest(),
        permissions=(),
        rate_limit=RateLimit(count=count, per_seconds=per),
    )
    other = PrincipalSettings(
        name="batch",
        token_sha256=hashlib.sha256(b"z").digest(),
        permissions=(),
        rate_limit=RateLimit(count=1, per_seconds=3600),
    )
    free = PrincipalSettings(
        name="free", token_sha256=hashlib.sha256(b"y").digest(), permissions=()
    )
    return [limited, other, free]


Limiter = Callable[..., RateLimiter]


@pytest.fixture(params=["local", "shared"])
def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Limiter]:
    """Limiters with their own buckets, or with buckets in a file as workers keep them."""
    made: list[RateLimiter] = []

    def make(clock: Callable[[], float], count: int = 3, per: int = 1) -> RateLimiter:
        shared = tmp_path / "rate-limits" if request.param == "shared" else None
        made.append(RateLimiter(principals(count, per), clock, shared=shared))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_allows_a_burst_up_to_the_limit_then_refuses_with_retry_after(limiter: Limiter) -> None:
    clock = MovingClock(1000.0)
    limits = limiter(clock, count=3, per=60)
    for _ in range(3):
        limits.check("idp")
    with pytest.raises(RateLimited) as info:
        limits.check("idp")
    assert info.value.status == 429
    assert info.value.retry_after == 20  # one request every 20 s at 3/min


def test_budget_refills_with_time(limiter: Limiter) -> None:
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


def test_refused_requests_do_not_spend_budget(limiter: Limiter) -> None:
    clock = MovingClock(1000.0)
    limits = limiter(clock, count=1, per=10)
    limits.check("idp")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limits.check("idp")
    clock.now += 10
    limits.check("idp")


def test_principals_without_a_limit_are_never_refused(limiter: Limiter) -> None:
    limits = limiter(MovingClock(1000.0), count=1)
    for _ in range(1000):
        limits.check("free")


def test_one_principals_budget_is_not_another_s(limiter: Limiter) -> None:
    limits = limiter(MovingClock(1000.0), count=2, per=60)
    limits.check("batch")
    limits.check("idp")
    limits.check("idp")
    with pytest.raises(RateLimited):
        limits.check("batch")


def test_workers_sharing_the_file_share_one_budget(tmp_path: Path) -> None:
    clock = MovingClock(1000.0)
    path = tmp_path / "rate-limits"
    first = RateLimiter(principals(3, 60), clock, shared=path)
    second = RateLimiter(principals(3, 60), clock, shared=path)
    try:
        first.check("idp")
        second.check("idp")
        first.check("idp")
        for each in (first, second):
            with pytest.raises(RateLimited):
                each.check("idp")
        clock.now += 20  # one request's worth at 3/min, for whichever worker asks first
        second.check("idp")
        with pytest.raises(RateLimited):
            first.check("idp")
    finally:
        first.close()
        second.close()


BUDGET = 20_000  # enough that the processes spend at the same time


def _fixed_clock() -> float:
    return 1000.0


def _spend_all(path: str, start: Barrier, results: Queue[int]) -> None:
    """In a worker process: spend from the shared file until refused 50 times in a row."""
    limits = RateLimiter(principals(BUDGET, 3600), _fixed_clock, shared=Path(path))
    passed = refused = 0
    start.wait()
    while refused < 50:
        try:
            limits.check("idp")
        except RateLimited:
            refused += 1
        else:
            passed, refused = passed + 1, 0
    limits.close()
    results.put(passed)


def test_processes_racing_on_the_file_never_pass_more_than_the_budget(tmp_path: Path) -> None:
    """Four processes spend at once: together they pass exactly the budget (a bucket read and
    written without the lock lets some requests through twice)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    path = str(tmp_path / "rate-limits")
    workers = [context.Process(target=_spend_all, args=(path, start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    passed = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    assert all(p > 0 for p in passed)  # they did race
    assert sum(passed) == BUDGET
