"""Where a signer request's time goes, from the signer's own ``GET /metrics`` histograms.

The bench scrapes ``/metrics`` before and after each signer scenario; the difference of each
histogram's ``_sum`` and ``_count`` is the mean over exactly that scenario's requests. Means are
as the event loop sees them: ``hsm sign`` includes the wait for the one PKCS#11 thread, ``sign +
audit`` the wait for the audit group commit. A signer without ``/metrics`` (or with other metric
names) simply has no stages.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

Samples = dict[str, float]  # "name{labels}" -> value

# A sample line: name, optional {labels} (values are quoted and may hold "}", as in a route
# "/v1/rings/{ring}/jwt"), whitespace, value.
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """One histogram whose mean is reported, optionally restricted to one label value."""

    name: str
    metric: str
    labels: str = ""  # e.g. 'operation="sign"': only series whose labels contain it
    scale: float = 1000.0  # seconds -> milliseconds


STAGES: tuple[Stage, ...] = (
    Stage(name="request ms", metric="signer_http_request_duration_seconds"),
    Stage(name="sign+audit ms", metric="signer_jwt_sign_duration_seconds"),
    Stage(
        name="hsm sign ms",
        metric="signer_hsm_operation_duration_seconds",
        labels='operation="sign"',
    ),
    Stage(name="audit commit ms", metric="signer_audit_commit_duration_seconds"),
    Stage(name="records/commit", metric="signer_audit_batch_records", scale=1.0),
)


def parse(text: str) -> Samples:
    """Prometheus text exposition -> samples (comments and malformed lines skipped)."""
    samples: Samples = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        try:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        except ValueError:
            continue
    return samples


def scrape(base_url: str) -> Samples | None:
    """The signer's current metrics, or None if it has no ``/metrics``."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:  # noqa: S310 -- loopback URL
            return parse(response.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _total(samples: Mapping[str, float], series: str, labels: str) -> float:
    total = 0.0
    for key, value in samples.items():
        name, _, rest = key.partition("{")
        if name == series and labels in rest:
            total += value
    return total


def breakdown(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Each stage's mean between the two scrapes; stages with no new samples are left out."""
    means = {}
    for stage in STAGES:
        count = _total(after, f"{stage.metric}_count", stage.labels)
        count -= _total(before, f"{stage.metric}_count", stage.labels)
        if count <= 0:
            continue
        total = _total(after, f"{stage.metric}_sum", stage.labels)
        total -= _total(before, f"{stage.metric}_sum", stage.labels)
        means[stage.name] = round(total / count * stage.scale, 4)
    return means


REQUESTS_COUNT = "signer_http_request_duration_seconds_count"


def requests_served(before: Mapping[str, float], after: Mapping[str, float]) -> int | None:
    """Requests the signer finished between two scrapes, less the first scrape's own request.

    Counts requests a load tool abandoned at its deadline too, which still cost the server.
    """
    served = _total(after, REQUESTS_COUNT, "") - _total(before, REQUESTS_COUNT, "") - 1
    return int(served) if served > 0 else None
