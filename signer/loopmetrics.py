"""Counters and histograms for the event loop's thread, exported through prometheus-client.

prometheus-client's metrics take a lock for every value they touch (a histogram observation
takes two, after a linear walk of its buckets): about 1.2 µs per observation, and every request
makes two to five of them. Every metric here is updated on the event loop's thread only (the
request wrapper, the sign path, the backend's timer, the audit writer's commit callback), so a
plain list of numbers is enough: 0.2 µs. The exposition is prometheus-client's own, samples
named and labelled as its ``Counter`` and ``Histogram`` name and label theirs, ``_created``
included.

Not thread-safe: update them on the event loop's thread only.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString


class CounterChild:
    """One labelled series of a ``LoopCounter``."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (not negative)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class HistogramChild:
    """One labelled series of a ``LoopHistogram``: a count per bucket and the sum."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)  # not cumulative; the last bucket is +Inf
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is at least ``value``."""
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.sum += value


class _Labelled(Collector):
    """Children by label values, created on first use, collected as one metric family."""

    kind = ""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        registry.register(self)

    def _labels(self, values: tuple[object, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        return tuple(str(value) for value in values)

    def describe(self) -> Iterator[Metric]:
        """The family without samples (the registry checks names at registration)."""
        yield Metric(self.name, self.documentation, self.kind)


class LoopCounter(_Labelled):
    """A labelled counter; exported as prometheus-client's ``Counter`` exports one."""

    kind = "counter"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)
        self._counters: dict[tuple[str, ...], CounterChild] = {}

    def labels(self, *values: object) -> CounterChild:
        """The series for these label values."""
        key = self._labels(values)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = CounterChild()
        return child

    def collect(self) -> Iterator[Metric]:
        """The counter family: ``_total`` and ``_created`` per series."""
        family = Metric(self.name, self.documentation, self.kind)
        for key, child in self._counters.items():
            labels = dict(zip(self.labelnames, key, strict=True))
            family.add_sample(self.name + "_total", labels, child.value)
            family.add_sample(self.name + "_created", labels, child.created)
        yield family


class LoopHistogram(_Labelled):
    """A labelled histogram; exported as prometheus-client's ``Histogram`` exports one."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name, documentation, labelnames, registry)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        # The ``le`` label as prometheus-client writes it ("0.005", "+Inf").
        self._le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self._histograms: dict[tuple[str, ...], HistogramChild] = {}

    def labels(self, *values: object) -> HistogramChild:
        """The series for these label values."""
        key = self._labels(values)
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = HistogramChild(self._bounds)
        return child

    def observe(self, value: float) -> None:
        """Observe into the one series of a histogram without labels."""
        self.labels().observe(value)

    def collect(self) -> Iterator[Metric]:
        """The histogram family: cumulative ``_bucket`` series, ``_count``, ``_sum``,
        ``_created``."""
        family = Metric(self.name, self.documentation, self.kind)
        for key, child in self._histograms.items():
            labels = dict(zip(self.labelnames, key, strict=True))
            total = 0
            for le, count in zip(self._le, child.counts, strict=True):
                total += count
                family.add_sample(self.name + "_bucket", {**labels, "le": le}, total)
            family.add_sample(self.name + "_count", labels, total)
            family.add_sample(self.name + "_sum", labels, child.sum)
            family.add_sample(self.name + "_created", labels, child.created)
        yield family


__all__ = ["CounterChild", "HistogramChild", "LoopCounter", "LoopHistogram"]
