"""Counters and histograms for the event loop's thread, exported through prometheus-client.

prometheus-client's metrics take a lock for every value they touch (a histogram observation
takes two, after a linear walk of its buckets): about 1.2 µs per observation, and every request
makes two to five of them. Every metric here is updated on the event loop's thread only (the
request wrapper, the sign path, the backend's timer, the audit writer's commit callback), so a
plain list of numbers is enough: 0.2 µs. The exposition is prometheus-client's own, samples
named and labelled as its ``Counter`` and ``Histogram`` name and label theirs, ``_created``
included.

Not thread-safe: update them on the event loop's thread only.

With ``[server] workers = N`` every worker publishes its series (``snapshot``) and answers a
scrape with the sum of its own and the others' last published ones (``peers``), so any worker
reports the whole server (``signer.metrics``).
"""

from __future__ import annotations

import bisect
import json
import math
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

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


# A family's series as another worker published them: [label values, *data] each (``snapshot``).
PeerSeries = Callable[[str], Iterable[Sequence[Any]]]


def _no_peers(_name: str) -> Iterable[Sequence[Any]]:
    return ()


class _Family(Collector):
    """A metric family collected from this process's series and, with ``[server] workers``,
    the other workers' last published ones (``peers``), summed series by series."""

    kind = ""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.peers: PeerSeries = _no_peers
        registry.register(self)

    def _labels(self, values: tuple[object, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        return tuple(str(value) for value in values)

    def describe(self) -> Iterator[Metric]:
        """The family without samples (the registry checks names at registration)."""
        yield Metric(self.name, self.documentation, self.kind)

    def snapshot(self) -> list[list[Any]]:
        """This process's series as JSON values: ``[label values, *data]`` each."""
        return [[list(key), *data] for key, data in self._own()]

    @abstractmethod
    def _own(self) -> Iterable[tuple[tuple[str, ...], list[Any]]]:
        """This process's series: label values and data."""

    def _merged(self) -> dict[tuple[str, ...], list[Any]]:
        """Own series and the peers', summed; a peer's series of the wrong shape is skipped."""
        merged = dict(self._own())
        for series in self.peers(self.name):
            key, data = _peer_key(series, len(self.labelnames)), list(series[1:])
            if key is None or not self._valid(data):
                continue
            mine = merged.get(key)
            merged[key] = data if mine is None else self._add(mine, data)
        return merged

    @abstractmethod
    def _valid(self, data: list[Any]) -> bool:
        """Whether a peer's series data has this family's shape."""

    @abstractmethod
    def _add(self, mine: list[Any], theirs: list[Any]) -> list[Any]:
        """Two series' data summed."""


def _peer_key(series: Sequence[Any], width: int) -> tuple[str, ...] | None:
    if not series or not isinstance(series[0], list) or len(series[0]) != width:
        return None
    if not all(isinstance(value, str) for value in series[0]):
        return None
    return tuple(series[0])


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class LoopCounter(_Family):
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

    def _own(self) -> Iterable[tuple[tuple[str, ...], list[Any]]]:
        return ((key, [c.value, c.created]) for key, c in self._counters.items())

    def _valid(self, data: list[Any]) -> bool:
        return len(data) == 2 and all(_number(v) for v in data)

    def _add(self, mine: list[Any], theirs: list[Any]) -> list[Any]:
        return [mine[0] + theirs[0], min(mine[1], theirs[1])]

    def collect(self) -> Iterator[Metric]:
        """The counter family: ``_total`` and ``_created`` per series."""
        family = Metric(self.name, self.documentation, self.kind)
        for key, (value, created) in self._merged().items():
            labels = dict(zip(self.labelnames, key, strict=True))
            family.add_sample(self.name + "_total", labels, value)
            family.add_sample(self.name + "_created", labels, created)
        yield family


class LoopHistogram(_Family):
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

    def _own(self) -> Iterable[tuple[tuple[str, ...], list[Any]]]:
        return ((key, [list(h.counts), h.sum, h.created]) for key, h in self._histograms.items())

    def _valid(self, data: list[Any]) -> bool:
        return (
            len(data) == 3
            and isinstance(data[0], list)
            and len(data[0]) == len(self._bounds)
            and all(_number(v) for v in (*data[0], data[1], data[2]))
        )

    def _add(self, mine: list[Any], theirs: list[Any]) -> list[Any]:
        counts = [a + b for a, b in zip(mine[0], theirs[0], strict=True)]
        return [counts, mine[1] + theirs[1], min(mine[2], theirs[2])]

    def collect(self) -> Iterator[Metric]:
        """The histogram family: cumulative ``_bucket`` series, ``_count``, ``_sum``,
        ``_created``."""
        family = Metric(self.name, self.documentation, self.kind)
        for key, (counts, total_sum, created) in self._merged().items():
            labels = dict(zip(self.labelnames, key, strict=True))
            total = 0
            for le, count in zip(self._le, counts, strict=True):
                total += count
                family.add_sample(self.name + "_bucket", {**labels, "le": le}, total)
            family.add_sample(self.name + "_count", labels, total)
            family.add_sample(self.name + "_sum", labels, total_sum)
            family.add_sample(self.name + "_created", labels, created)
        yield family


class LoopGauge(_Family):
    """A gauge without labels, read from ``function`` (set when there is something to read) at
    scrape time; the workers' values add up."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name, documentation, (), registry)
        self.function: Callable[[], float] = lambda: 0.0

    def _own(self) -> Iterable[tuple[tuple[str, ...], list[Any]]]:
        return (((), [float(self.function())]),)

    def _valid(self, data: list[Any]) -> bool:
        return len(data) == 1 and _number(data[0])

    def _add(self, mine: list[Any], theirs: list[Any]) -> list[Any]:
        return [mine[0] + theirs[0]]

    def collect(self) -> Iterator[Metric]:
        """The gauge family: its one sample."""
        family = Metric(self.name, self.documentation, self.kind)
        for (value,) in self._merged().values():
            family.add_sample(self.name, {}, value)
        yield family


class SharedSeries:
    """What the workers of one server publish to each other: a JSON file per worker in a
    directory of the server's own (the supervisor makes it, mode 0700), replaced whole."""

    def __init__(self, directory: Path, worker: int) -> None:
        self._directory = directory
        self._name = f"worker-{worker}.json"
        self._peers: dict[str, list[Sequence[Any]]] = {}

    def publish(self, families: Mapping[str, list[list[Any]]]) -> None:
        """Replace this worker's file with ``families`` (``OSError`` if it cannot)."""
        staged = self._directory / (self._name + ".tmp")
        staged.write_text(json.dumps(families), encoding="utf-8")
        staged.replace(self._directory / self._name)

    def load(self) -> None:
        """Read the other workers' files; one that cannot be read or parsed is left out."""
        peers: dict[str, list[Sequence[Any]]] = {}
        for path in sorted(self._directory.glob("worker-*.json")):
            if path.name == self._name:
                continue
            try:
                published = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(published, dict):
                continue
            for name, series in published.items():
                if isinstance(series, list):
                    peers.setdefault(name, []).extend(s for s in series if isinstance(s, list))
        self._peers = peers

    def series(self, name: str) -> Iterable[Sequence[Any]]:
        """The other workers' series of family ``name``, as last ``load``ed."""
        return self._peers.get(name, ())


__all__ = [
    "CounterChild",
    "HistogramChild",
    "LoopCounter",
    "LoopGauge",
    "LoopHistogram",
    "PeerSeries",
    "SharedSeries",
]
