"""Rendering bench results: the table, the comparison with an earlier run, the files, the chart."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.benchlib.results import (
    Metric,
    RunJson,
    ScenarioResult,
    Status,
    TargetCheck,
    check_targets,
    ratios_of,
)
from scripts.benchlib.stages import STAGES
from scripts.benchlib.stats import change_percent

HEADERS = (
    "scenario",
    "req/s",
    "items/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "cpu ms/item",
    "vs",
    "x rate",
    "x p99",
    "target",
)
# With several rounds, the min-max of their items/s, right after the reported items/s.
SPREAD_HEADER = "items/s min-max"
_SPREAD_AFTER = "items/s"
_LEFT = frozenset({"scenario", "vs", "target"})  # columns aligned left: names and text


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict(check: TargetCheck) -> str:
    sign = ">=" if check.target.metric is Metric.THROUGHPUT else "<="
    label = "rate" if check.target.metric is Metric.THROUGHPUT else "p99"
    outcome = {True: "met", False: "NOT met", None: "n/a"}[check.met]
    return f"{label} {sign}{check.target.threshold:g}x {outcome}"


def several_rounds(results: Sequence[ScenarioResult]) -> bool:
    """Whether any scenario was measured in more than one round (the table shows the spread)."""
    return any(len(result.round_rates or ()) > 1 for result in results)


def headers(*, spread: bool) -> tuple[str, ...]:
    """The table's column names: ``HEADERS``, and with ``spread`` the min-max column."""
    if not spread:
        return HEADERS
    at = HEADERS.index(_SPREAD_AFTER) + 1
    return (*HEADERS[:at], SPREAD_HEADER, *HEADERS[at:])


def spread_text(rates: Sequence[float] | None) -> str:
    """``min-max`` of the rounds' items/s; empty without rates."""
    if not rates:
        return ""
    return f"{_num(min(rates))}-{_num(max(rates))}"


def table_rows(results: Sequence[ScenarioResult], *, spread: bool = False) -> list[list[str]]:
    """One row of cells per scenario, in ``headers(spread=spread)`` order."""
    by_name = {result.name: result for result in results}
    checks = check_targets(results)
    rows = [_row(result, by_name, checks) for result in results]
    if spread:
        at = HEADERS.index(_SPREAD_AFTER) + 1
        for row, result in zip(rows, results, strict=True):
            row.insert(at, spread_text(result.round_rates))
    return rows


def _row(
    result: ScenarioResult, by_name: Mapping[str, ScenarioResult], checks: Sequence[TargetCheck]
) -> list[str]:
    """``result``'s cells in ``HEADERS`` order."""
    verdicts = "; ".join(_verdict(c) for c in checks if c.target.scenario == result.name)
    m = result.measurement
    if m is None:
        return [result.name, result.status.value, *[""] * 6, result.reason or "", "", "", ""]
    ratios = ratios_of(result, by_name)
    return [
        result.name,
        _num(m.rps),
        _num(result.items_per_s) if result.items_per_request != 1 else "",
        _num(m.p50_ms, 2),
        _num(m.p99_ms, 2),
        _num(m.p999_ms, 2),
        str(m.errors),
        _num(result.cpu_ms_per_item, 3),
        result.reference or "",
        _ratio(ratios.throughput),
        _ratio(ratios.p99),
        verdicts,
    ]


def render_table(results: Sequence[ScenarioResult], *, markdown: bool = False) -> str:
    """The results as an aligned text table, or as a Markdown table.

    With several rounds (``several_rounds``), a column shows the min-max items/s over them.
    """
    spread = several_rounds(results)
    names = headers(spread=spread)
    rows = table_rows(results, spread=spread)
    left = [name in _LEFT for name in names]
    if markdown:
        lines = ["| " + " | ".join(names) + " |"]
        lines.append("|" + "|".join(":--" if is_left else "--:" for is_left in left) + "|")
        lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [list(names), *rows]) for i in range(len(names))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.ljust(widths[i]) if left[i] else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(names), line(["-" * w for w in widths]), *map(line, rows)])


def render_targets(results: Sequence[ScenarioResult]) -> str:
    """The issue's targets, one line each: measured ratio and met / not met (never asserted)."""
    lines = []
    for check in check_targets(results):
        outcome = {True: "met", False: "NOT met", None: "not measured"}[check.met]
        lines.append(f"  {check.target.text:<48} {_ratio(check.value):>7}  {outcome}")
    return "\n".join(lines)


def render_stages(results: Sequence[ScenarioResult]) -> str | None:
    """Mean time per stage of each signer scenario (from its /metrics); None if there are none."""
    with_stages = [r for r in results if r.stages]
    if not with_stages:
        return None
    names = [stage.name for stage in STAGES]
    width = max(len(r.name) for r in with_stages)
    lines = [" ".join([f"{'scenario':<{width}}", *(f"{n:>15}" for n in names)])]
    for result in with_stages:
        stages = result.stages or {}
        cells = [_num(stages.get(name), 3 if name.endswith("ms") else 1) for name in names]
        lines.append(" ".join([f"{result.name:<{width}}", *(f"{c:>15}" for c in cells)]))
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def render_comparison(previous: Sequence[ScenarioResult], current: Sequence[ScenarioResult]) -> str:
    """Per scenario: items/s and p99 before and now, with the relative change."""
    before = {result.name: result for result in previous}
    header = f"{'scenario':<16} {'rate before':>12} {'rate now':>12} {'change':>8}"
    header += f" {'p99 before':>11} {'p99 now':>9} {'change':>8}"
    lines = [header]
    for result in current:
        old = before.get(result.name)
        if old is None or old.measurement is None or result.measurement is None:
            lines.append(f"{result.name:<16} {'(no comparable result)':>34}")
            continue
        old_rate, new_rate = old.items_per_s or 0.0, result.items_per_s or 0.0
        old_p99, new_p99 = old.measurement.p99_ms, result.measurement.p99_ms
        lines.append(
            f"{result.name:<16} {_num(old_rate):>12} {_num(new_rate):>12}"
            f" {_pct(change_percent(old_rate, new_rate)):>8}"
            f" {_num(old_p99, 2):>11} {_num(new_p99, 2):>9}"
            f" {_pct(change_percent(old_p99, new_p99)):>8}"
        )
    return "\n".join(lines)


def write_chart(results: Sequence[ScenarioResult], path: Path, *, title: str) -> str | None:
    """A bar chart of requests/s per scenario (baselines in grey); the reason if it is skipped."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 -- optional: the chart is skipped without it

        mpl.use("Agg")  # no display: render to a file
        from matplotlib import pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "matplotlib is not installed; chart skipped (pip install matplotlib)"
    measured = [r for r in results if r.status is Status.OK and r.measurement is not None]
    if not measured:
        return "no scenario was measured; chart skipped"
    names = [r.name for r in measured]
    rates = [r.measurement.rps for r in measured if r.measurement is not None]
    colours = [
        "#9e9e9e" if r.name.startswith(("baseline", "hsm-raw")) else "#1f77b4" for r in measured
    ]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    bars = axes.barh(names, rates, color=colours)
    axes.invert_yaxis()
    axes.set_xscale("log")  # batch requests carry 100 tokens: rates span three decades
    axes.set_xlim(right=max(rates) * 4)  # room for the labels right of the longest bar
    axes.set_xlabel("requests/s (log scale); grey: references")
    axes.set_title(title)
    for bar, result in zip(bars, measured, strict=True):
        label = f" {result.measurement.rps:,.0f}" if result.measurement else ""
        if result.items_per_request != 1 and result.items_per_s is not None:
            label += f" ({result.items_per_s:,.0f} tokens/s)"
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None


def write_results(
    obj: RunJson, results: Sequence[ScenarioResult], output: Path, *, chart: bool
) -> None:
    """``bench-<UTC time>.json`` and ``latest.json`` (and the charts) in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + obj["started_at"].replace("-", "").replace(":", "")
    path = output / f"{stem}.json"
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(path, output / "latest.json")
    print(f"\nresults: {path} (and {output / 'latest.json'})")
    if not chart:
        return
    png = output / f"{stem}.png"
    title = f"signer vs aiohttp baseline, {obj['machine']['cpu_count']} cores"
    skipped = write_chart(results, png, title=title)
    if skipped is not None:
        print(f"chart: {skipped}")
        return
    shutil.copyfile(png, output / "latest.png")
    print(f"chart: {png}")


def _rounds_note(settings: Mapping[str, Any]) -> str:
    """For the report's header: how many rounds, when more than one."""
    rounds = int(settings.get("rounds", 1))
    return "" if rounds == 1 else f"; {rounds} rounds, each scenario's median round shown"


def print_report(
    obj: RunJson,
    results: Sequence[ScenarioResult],
    *,
    previous: Sequence[ScenarioResult] | None,
    markdown: bool,
) -> None:
    """The run's header, the table, the targets and, if asked, the comparison."""
    machine, settings = obj["machine"], obj["settings"]
    print(
        f"\n{obj['started_at']}  {machine['cpu_count']} cores  Python {machine['python']}"
        f"  load average at start {machine['load_average_at_start'][0]}"
        f"\nloader: {machine['loader']}; {settings['connections']} connections,"
        f" {settings['duration_s']}s per scenario;"
        f" signer workers: {settings.get('signer_workers', 1)};"
        f" event loop: {settings.get('event_loop', 'asyncio')}{_rounds_note(settings)}\n"
    )
    print(render_table(results, markdown=markdown))
    stage_table = render_stages(results)
    if stage_table is not None:
        print("\nmean time per stage, from the signer's /metrics:")
        print(stage_table)
    print("\ntargets (reported, not asserted):")
    print(render_targets(results))
    if previous is not None:
        print("\ncompared with the earlier run:")
        print(render_comparison(previous, results))
