"""Bench results: one record per scenario, the ratios to its baseline, and the issue's targets.

Targets are reported (met / not met), never asserted: a bench run on a busy laptop must not fail
a build. The ratios compare like with like on the same machine in the same run:

* JWKS scenarios against ``baseline-get`` (a plain aiohttp GET of a body of the JWKS's size);
* single-token signing against ``baseline-post`` (a plain aiohttp POST parsing the same JSON);
* batch signing, in tokens/s, against ``hsm-raw`` (in-process HSM signatures/s).

With ``--rounds N``, each scenario is measured N times and reported as the round with the median
items/s (``median_round``), with every round's items/s kept in ``round_rates``.
"""

from __future__ import annotations

import dataclasses
import enum
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from scripts.benchlib.stats import Measurement, MeasurementJson, ratio


class Status(enum.StrEnum):
    """How a scenario ended."""

    OK = "ok"
    UNAVAILABLE = "unavailable"  # the endpoint is not there (yet): reported, not a failure
    FAILED = "failed"


class Metric(enum.StrEnum):
    """What a target compares."""

    THROUGHPUT = "throughput"  # items/s over the reference's items/s; higher is better
    P99 = "p99"  # p99 latency over the reference's p99; lower is better


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    """One scenario's outcome. ``items_per_request`` is 100 for batch signing, else 1."""

    name: str
    description: str
    reference: str | None  # the scenario its ratios are taken against
    items_per_request: int = 1
    status: Status
    reason: str | None = None
    measurement: Measurement | None = None
    # The server process's CPU time per item (token, signature, JWKS answer) in ms.
    cpu_ms_per_item: float | None = None
    # Mean time per stage from the signer's /metrics over this scenario (see ``stages``).
    stages: Mapping[str, float] | None = None
    # Items/s of every round, in round order, when each round measured it (``median_round``).
    round_rates: tuple[float, ...] | None = None

    @property
    def items_per_s(self) -> float | None:
        """Tokens (or signatures) per second; requests/s times ``items_per_request``."""
        if self.measurement is None:
            return None
        return self.measurement.rps * self.items_per_request


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One of the issue's performance targets."""

    scenario: str
    metric: Metric
    threshold: float
    text: str

    def met_by(self, value: float) -> bool:
        """Whether a ratio meets the target (throughput: at least; latency: at most)."""
        if self.metric is Metric.THROUGHPUT:
            return value >= self.threshold
        return value <= self.threshold


TARGETS: tuple[Target, ...] = (
    Target(
        scenario="jwks-200",
        metric=Metric.THROUGHPUT,
        threshold=0.9,
        text="JWKS GET req/s >= 0.9x baseline GET",
    ),
    Target(
        scenario="sign-es256",
        metric=Metric.THROUGHPUT,
        threshold=0.5,
        text="ES256 sign req/s >= 0.5x baseline POST",
    ),
    Target(
        scenario="sign-es256",
        metric=Metric.P99,
        threshold=2.0,
        text="ES256 sign p99 <= 2x baseline POST p99",
    ),
    Target(
        scenario="batch-es256",
        metric=Metric.THROUGHPUT,
        threshold=0.7,
        text="batch ES256 tokens/s >= 0.7x raw HSM signs/s",
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ratios:
    """A scenario against its reference: throughput (items/s) and p99 latency."""

    throughput: float | None
    p99: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetCheck:
    """A target and what this run measured for it; ``met`` is None when not measurable."""

    target: Target
    value: float | None
    met: bool | None


def ratios_of(result: ScenarioResult, by_name: Mapping[str, ScenarioResult]) -> Ratios:
    """``result`` against its reference; None wherever either side has no measurement."""
    reference = by_name.get(result.reference) if result.reference else None
    if reference is None or result.measurement is None or reference.measurement is None:
        return Ratios(throughput=None, p99=None)
    mine, theirs = result.items_per_s, reference.items_per_s
    assert mine is not None  # noqa: S101 -- a measurement implies a rate
    assert theirs is not None  # noqa: S101
    # Latencies compare only like for like: a 100-token batch is not one signature.
    same_unit = result.items_per_request == reference.items_per_request
    paired = paired_ratio(result.round_rates, reference.round_rates)
    return Ratios(
        throughput=ratio(mine, theirs) if paired is None else paired,
        p99=ratio(result.measurement.p99_ms, reference.measurement.p99_ms) if same_unit else None,
    )


def paired_ratio(mine: Sequence[float] | None, theirs: Sequence[float] | None) -> float | None:
    """With several rounds, the median of the per-round rate ratios; None otherwise.

    A round measures a scenario and its reference seconds apart, so each round's ratio is
    paired: a slow spell of the machine slows both. The ratio of the two median rounds could
    pair a fast round of one with a slow round of the other.
    """
    if not mine or not theirs or len(mine) != len(theirs) or len(mine) < 2:
        return None
    ratios = [m / t for m, t in zip(mine, theirs, strict=True) if t > 0]
    return statistics.median(ratios) if ratios else None


def check_targets(
    results: Iterable[ScenarioResult], targets: Iterable[Target] = TARGETS
) -> list[TargetCheck]:
    """Evaluate each target on this run's results."""
    by_name = {result.name: result for result in results}
    checks = []
    for target in targets:
        result = by_name.get(target.scenario)
        value = None
        if result is not None:
            ratios = ratios_of(result, by_name)
            value = ratios.throughput if target.metric is Metric.THROUGHPUT else ratios.p99
        checks.append(
            TargetCheck(
                target=target, value=value, met=None if value is None else target.met_by(value)
            )
        )
    return checks


class ScenarioJson(TypedDict):
    """The wire shape of one scenario in a results file."""

    name: str
    description: str
    reference: str | None
    items_per_request: int
    status: str
    reason: str | None
    measurement: MeasurementJson | None
    rps: float | None
    items_per_s: float | None
    ratio_throughput: float | None
    ratio_p99: float | None
    cpu_ms_per_item: float | None
    stages: dict[str, float] | None
    round_rates: NotRequired[list[float] | None]  # absent in files written before --rounds


class TargetJson(TypedDict):
    """The wire shape of one target check."""

    scenario: str
    metric: str
    threshold: float
    text: str
    value: float | None
    met: bool | None


class RunJson(TypedDict):
    """A whole results file (``bench-results/*.json``)."""

    schema: int
    started_at: str
    command: list[str]
    settings: dict[str, Any]
    machine: dict[str, Any]
    scenarios: list[ScenarioJson]
    targets: list[TargetJson]


SCHEMA = 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run_json(
    results: list[ScenarioResult],
    *,
    started_at: str,
    command: list[str],
    settings: dict[str, Any],
    machine: dict[str, Any],
) -> RunJson:
    """The results file for one run: every scenario, its ratios, and the targets."""
    by_name = {result.name: result for result in results}
    scenarios: list[ScenarioJson] = []
    for result in results:
        ratios = ratios_of(result, by_name)
        scenarios.append(
            {
                "name": result.name,
                "description": result.description,
                "reference": result.reference,
                "items_per_request": result.items_per_request,
                "status": result.status.value,
                "reason": result.reason,
                "measurement": None if result.measurement is None else result.measurement.to_json(),
                "rps": None if result.measurement is None else _round(result.measurement.rps),
                "items_per_s": _round(result.items_per_s),
                "ratio_throughput": _round(ratios.throughput),
                "ratio_p99": _round(ratios.p99),
                "cpu_ms_per_item": _round(result.cpu_ms_per_item),
                "stages": None if result.stages is None else dict(result.stages),
                "round_rates": None
                if result.round_rates is None
                else [round(rate, 4) for rate in result.round_rates],
            }
        )
    targets: list[TargetJson] = [
        {
            "scenario": check.target.scenario,
            "metric": check.target.metric.value,
            "threshold": check.target.threshold,
            "text": check.target.text,
            "value": _round(check.value),
            "met": check.met,
        }
        for check in check_targets(results)
    ]
    return {
        "schema": SCHEMA,
        "started_at": started_at,
        "command": command,
        "settings": settings,
        "machine": machine,
        "scenarios": scenarios,
        "targets": targets,
    }


def results_from_json(obj: RunJson) -> list[ScenarioResult]:
    """Read the scenarios of a results file back (for ``--compare``)."""
    if obj.get("schema") != SCHEMA:
        raise ValueError(f"unsupported results schema {obj.get('schema')!r}; expected {SCHEMA}")
    results = []
    for item in obj["scenarios"]:
        measurement = item["measurement"]
        rates = item.get("round_rates")
        results.append(
            ScenarioResult(
                name=item["name"],
                description=item["description"],
                reference=item["reference"],
                items_per_request=item["items_per_request"],
                status=Status(item["status"]),
                reason=item["reason"],
                measurement=None if measurement is None else Measurement.from_json(measurement),
                cpu_ms_per_item=item.get("cpu_ms_per_item"),
                stages=item.get("stages"),
                round_rates=None if rates is None else tuple(float(rate) for rate in rates),
            )
        )
    return results


def _rate(result: ScenarioResult) -> float:
    rate = result.items_per_s
    if rate is None:
        raise ValueError(f"{result.name} has no measurement")
    return rate


def median_round(rounds: Sequence[ScenarioResult]) -> ScenarioResult:
    """One scenario's rounds (in round order) as one result: the round with the median items/s.

    With an even number of rounds, the lower of the two middle ones (ties: the earlier round).
    The chosen round keeps its own measurement, CPU per item and stages, and gets the items/s of
    every round as ``round_rates``. If any round failed, the first failure is the result (its
    reason naming the round); otherwise, if any round was not measured (unavailable), that one.
    """
    if not rounds:
        raise ValueError("median_round needs at least one round")
    for number, result in enumerate(rounds, start=1):
        if result.status is Status.FAILED:
            if len(rounds) == 1:
                return result
            reason = f"round {number} of {len(rounds)}: {result.reason or 'failed'}"
            return dataclasses.replace(result, reason=reason)
    for result in rounds:
        if result.status is not Status.OK or result.measurement is None:
            return result
    rates = tuple(_rate(result) for result in rounds)
    by_rate = sorted(range(len(rounds)), key=lambda index: rates[index])
    chosen = rounds[by_rate[(len(rounds) - 1) // 2]]
    return dataclasses.replace(chosen, round_rates=rates)


def combine_rounds(rounds: Iterable[Iterable[ScenarioResult]]) -> list[ScenarioResult]:
    """Every round's results as one result per scenario (``median_round``), in first-seen order."""
    by_name: dict[str, list[ScenarioResult]] = {}
    for one_round in rounds:
        for result in one_round:
            by_name.setdefault(result.name, []).append(result)
    return [median_round(results) for results in by_name.values()]
