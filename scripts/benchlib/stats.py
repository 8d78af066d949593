"""Latency statistics: one ``Measurement`` per scenario, from raw samples or a load tool's summary.

Pure functions over numbers; no I/O and no clock. Percentiles use the nearest-rank method (the
smallest sample with at least ``q`` percent of the samples at or below it), which never reports
a latency that no request had.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class MeasurementJson(TypedDict):
    """The wire shape of a ``Measurement`` (bench results, ``hsm_rate`` output)."""

    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """What one closed-loop run observed.

    ``requests`` counts only answers with the expected status; ``errors`` counts everything else
    (wrong status, socket errors, timeouts). Latencies are those of the successful requests.
    """

    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float

    @property
    def rps(self) -> float:
        """Successful requests per second of wall-clock time."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> MeasurementJson:
        """The wire shape."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 4),
            "p50_ms": round(self.p50_ms, 4),
            "p90_ms": round(self.p90_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "p999_ms": round(self.p999_ms, 4),
        }

    @classmethod
    def from_json(cls, obj: MeasurementJson) -> Measurement:
        """Read the wire shape back."""
        return cls(
            requests=int(obj["requests"]),
            errors=int(obj["errors"]),
            duration_s=float(obj["duration_s"]),
            p50_ms=float(obj["p50_ms"]),
            p90_ms=float(obj["p90_ms"]),
            p99_ms=float(obj["p99_ms"]),
            p999_ms=float(obj["p999_ms"]),
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``ordered`` (ascending); NaN when it is empty."""
    if not 0.0 < q <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    if not ordered:
        return math.nan
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point.
    rank = math.ceil(round(q / 100.0 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


def summarize(latencies_s: Sequence[float], *, errors: int, duration_s: float) -> Measurement:
    """A ``Measurement`` from per-request latencies in seconds (successful requests only)."""
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    ordered = sorted(latencies_s)
    p50, p90, p99, p999 = (percentile(ordered, q) * 1000.0 for q in PERCENTILES)
    return Measurement(
        requests=len(ordered),
        errors=errors,
        duration_s=duration_s,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        p999_ms=p999,
    )


def ratio(value: float, reference: float) -> float | None:
    """``value / reference``, or None when the reference is zero or not a number."""
    if reference == 0 or math.isnan(reference) or math.isnan(value):
        return None
    return value / reference


def change_percent(old: float, new: float) -> float | None:
    """Relative change from ``old`` to ``new`` in percent; None when ``old`` is zero or NaN."""
    relative = ratio(new, old)
    return None if relative is None else (relative - 1.0) * 100.0
