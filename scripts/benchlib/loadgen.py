"""The built-in load generator: a closed loop of N concurrent workers, each timing its requests.

Used when ``wrk`` is not installed (or with ``--loader aiohttp``). Each worker sends a request,
waits for the whole answer, records ``time.perf_counter()`` latency, and sends the next one, until
the duration is over; so at most N requests are in flight, as with ``wrk -c N``. The same loop
drives the in-process HSM measurement (``hsm_rate``), so both report alike.

A Python client shares the machine's cores with the server it measures, and tops out well below
``wrk``; ratios taken with it understate the gap between a fast server and a slow one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from scripts.benchlib.stats import Measurement, summarize

REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSpec:
    """One HTTP request, sent over and over, and the status that counts as success."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    expect: int = 200


async def closed_loop(
    operation: Callable[[], Awaitable[bool]], *, workers: int, duration_s: float
) -> Measurement:
    """Run ``operation`` from ``workers`` concurrent loops for ``duration_s``.

    ``operation`` returns True for success; False or an exception counts as an error. Requests
    still running at the deadline finish and count; the duration is measured to the last one.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + duration_s

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            try:
                ok = await operation()
            except (aiohttp.ClientError, OSError, TimeoutError):
                ok = False
            end = time.perf_counter()
            if ok:
                latencies.append(end - begin)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return summarize(latencies, errors=errors, duration_s=time.perf_counter() - started)


async def drive(spec: RequestSpec, *, connections: int, duration_s: float) -> Measurement:
    """Send ``spec`` from ``connections`` keep-alive connections for ``duration_s``."""
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    headers = dict(spec.headers)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> bool:
            async with session.request(
                spec.method, spec.url, headers=headers, data=spec.body
            ) as response:
                await response.read()
                return response.status == spec.expect

        return await closed_loop(one, workers=connections, duration_s=duration_s)


def run(spec: RequestSpec, *, connections: int, duration_s: float) -> Measurement:
    """``drive`` on a fresh event loop (the bench orchestrator is synchronous)."""
    return asyncio.run(drive(spec, connections=connections, duration_s=duration_s))
