"""Prometheus metrics: one registry per application, rendered at ``GET /metrics``.

Request and signing latencies are histograms; HSM operations are timed by wrapping the backend.
Counters and histograms are ``signer.loopmetrics``'s: only the event loop's thread updates them,
so they skip prometheus-client's locks, and they export the same samples. Gauges that depend on
the clock (key age, time to the next rotation step) are computed at scrape time from the ring
views, so they cost nothing on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jwks.algorithms import Alg
from signer.hsm.base import KeyBackend, KeyProof, KeyRef
from signer.loopmetrics import (
    CounterChild,
    HistogramChild,
    LoopCounter,
    LoopGauge,
    LoopHistogram,
    SharedSeries,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from signer.keeper import Keeper
    from signer.service import SignerService

log = logging.getLogger("signer.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# How often a worker publishes its series for the others: a scrape sees theirs this late at most.
PUBLISH_INTERVAL_S = 1.0
# Sub-millisecond resolution where signing lives, up to the seconds an outage takes.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class Metrics:
    """Every metric the signer exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = LoopHistogram(
            "signer_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sign = LoopHistogram(
            "signer_jwt_sign_duration_seconds",
            "Time to sign and audit one JWT, by ring and algorithm.",
            ["ring", "alg"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hsm = LoopHistogram(
            "signer_hsm_operation_duration_seconds",
            "PKCS#11 operation latency by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hsm_errors = LoopCounter(
            "signer_hsm_errors_total", "PKCS#11 operations that failed.", ["operation"], registry=r
        )
        self.audit_commit = LoopHistogram(
            "signer_audit_commit_duration_seconds",
            "Time to commit one batch of audit records.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_batch = LoopHistogram(
            "signer_audit_batch_records",
            "Audit records per group commit.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.audit_queue = LoopGauge(
            "signer_audit_queue_depth", "Audit records waiting for a commit.", registry=r
        )
        self.jwks = LoopCounter(
            "signer_jwks_requests_total",
            "JWKS responses by ring and status (200 or 304).",
            ["ring", "status"],
            registry=r,
        )
        self._shared: SharedSeries | None = None
        self._request_children: dict[tuple[str, str, int], HistogramChild] = {}
        self._jwks_children: dict[tuple[str, int], CounterChild] = {}
        self.rate_limited = LoopCounter(
            "signer_rate_limited_total",
            "Requests refused by a principal's rate limit.",
            ["principal"],
            registry=r,
        )

    def request_timer(self, method: str, route: str, status: int) -> HistogramChild:
        """The request histogram's child for these labels, looked up once per combination."""
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(method, route, str(status))
            self._request_children[key] = child
        return child

    def jwks_served(self, ring: str, status: int) -> None:
        """Count one JWKS response of ``ring`` (200 or 304)."""
        key = (ring, status)
        child = self._jwks_children.get(key)
        if child is None:
            child = self._jwks_children[key] = self.jwks.labels(ring, str(status))
        child.inc()

    def observe_commit(self, records: int, seconds: float) -> None:
        """One audit group commit of ``records`` records took ``seconds``."""
        self.audit_commit.observe(seconds)
        self.audit_batch.observe(records)

    def watch(self, service: SignerService, keeper: Keeper) -> None:
        """Export key age and time to the next lifecycle step, computed at scrape time."""
        self.audit_queue.function = lambda: service.audit.depth
        self.registry.register(_LifecycleCollector(service, keeper))

    def share(self, directory: Path, worker: int) -> None:
        """Publish this worker's series into ``directory`` (``publish``) and add the other
        workers' to every scrape, so each worker answers for the whole ``[server] workers`` set.
        """
        self._shared = SharedSeries(directory, worker)
        for family in self._families():
            family.peers = self._shared.series

    async def publish_forever(self, interval: float = PUBLISH_INTERVAL_S) -> None:
        """Publish this worker's series every ``interval`` seconds (``share``; else return)."""
        while self._shared is not None:
            try:
                self.publish()
            except OSError as exc:
                log.warning("could not publish this worker's metrics: %s", exc)
            await asyncio.sleep(interval)

    def publish(self) -> None:
        """Write this worker's series for the others to read (nothing unless ``share``d)."""
        if self._shared is not None:
            self._shared.publish({family.name: family.snapshot() for family in self._families()})

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (every worker's, when shared)."""
        if self._shared is not None:
            self._shared.load()
        return generate_latest(self.registry)

    def _families(self) -> list[LoopCounter | LoopHistogram | LoopGauge]:
        return [
            value
            for value in vars(self).values()
            if isinstance(value, LoopCounter | LoopHistogram | LoopGauge)
        ]


class _LifecycleCollector(Collector):
    def __init__(self, service: SignerService, keeper: Keeper) -> None:
        self._service = service
        self._keeper = keeper

    def collect(self) -> Iterator[Metric]:
        now = self._service.clock()
        age = GaugeMetricFamily(
            "signer_active_key_age_seconds",
            "Seconds since the ring's key activated.",
            labels=["ring"],
        )
        until = GaugeMetricFamily(
            "signer_next_lifecycle_step_seconds",
            "Seconds until the ring's next scheduled key transition.",
            labels=["ring"],
        )
        for name, view in self._service.views.items():
            if view.signing is not None and view.signing.record.activated_at is not None:
                age.add_metric([name], now - view.signing.record.activated_at)
            due = self._keeper.next_transition(name)
            if due is not None:
                until.add_metric([name], max(0.0, due - now))
        yield age
        yield until


T = TypeVar("T")
TIMED_OPERATIONS = ("generate", "sign")


class InstrumentedBackend:
    """A ``KeyBackend`` that times every operation of the backend it wraps."""

    def __init__(self, inner: KeyBackend, metrics: Metrics) -> None:
        self._inner = inner
        # The children of each timed operation, looked up once: signing is the hot path.
        self._latency = {op: metrics.hsm.labels(op) for op in TIMED_OPERATIONS}
        self._errors = {op: metrics.hsm_errors.labels(op) for op in TIMED_OPERATIONS}

    async def _timed(self, operation: str, call: Awaitable[T], *, count: int = 1) -> T:
        """Await ``call``; its latency is observed ``count`` times (once per signature)."""
        start = time.perf_counter()
        try:
            return await call
        except Exception:
            self._errors[operation].inc()
            raise
        finally:
            elapsed = time.perf_counter() - start
            latency = self._latency[operation]
            for _ in range(count):
                latency.observe(elapsed)

    async def generate(self, alg: Alg, key_id: str, label: str) -> KeyRef:
        """Time ``generate``."""
        return await self._timed("generate", self._inner.generate(alg, key_id, label))

    async def sign(self, ref: KeyRef, data: bytes) -> bytes:
        """Time ``sign``."""
        return await self._timed("sign", self._inner.sign(ref, data))

    async def sign_many(self, ref: KeyRef, inputs: Sequence[bytes]) -> list[bytes]:
        """Time ``sign_many``: each signature is observed with the whole call's latency."""
        return await self._timed("sign", self._inner.sign_many(ref, inputs), count=len(inputs))

    async def sign_digest(self, ref: KeyRef, digest: bytes) -> bytes:
        """Time ``sign_digest`` (as a sign operation)."""
        return await self._timed("sign", self._inner.sign_digest(ref, digest))

    async def public_key(self, ref: KeyRef) -> bytes:
        """Pass through (cached by the backend)."""
        return await self._inner.public_key(ref)

    async def destroy(self, ref: KeyRef) -> None:
        """Pass through."""
        await self._inner.destroy(ref)

    async def attributes(self, ref: KeyRef) -> KeyProof:
        """Pass through."""
        return await self._inner.attributes(ref)

    async def list_refs(self, label_prefix: str) -> list[KeyRef]:
        """Pass through."""
        return await self._inner.list_refs(label_prefix)

    async def aping(self) -> None:
        """Pass through."""
        await self._inner.aping()

    async def aclose(self) -> None:
        """Pass through."""
        await self._inner.aclose()
