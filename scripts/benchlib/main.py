"""``scripts/bench``: measure the signer against a plain aiohttp baseline on this machine.

Order of a run: the raw HSM sign rate (in a child process, before any server starts), then
``signer init`` + ``signer serve`` with one ring per algorithm, then the baseline app sized to the
signer's JWKS, then every HTTP scenario one after another with the same load generator (``wrk``
if installed, else the built-in aiohttp client). Results go to ``bench-results/`` as JSON (and a
PNG chart with matplotlib); targets are reported as met / not met, never asserted.

With ``--rounds N``, the servers start once and the selected list runs N times in order (each
baseline right before the scenarios compared with it); later rounds measure ``hsm-raw`` first,
with the servers up and idle. Each scenario is reported as its median round (``median_round``);
``--profile`` runs once, after the last round.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from scripts.benchlib import hsm_rate, profile, report, scenarios, servers, stages
from scripts.benchlib.loader import Loader, choose_loader
from scripts.benchlib.results import (
    ScenarioResult,
    Status,
    combine_rounds,
    results_from_json,
    run_json,
)
from signer.eventloop import DEFAULT_EVENT_LOOP, EVENT_LOOPS

DEFAULT_OUTPUT = servers.REPO / "bench-results"
PROFILED = "sign-es256"
# Scenarios taken against these references sign: they get a stage breakdown from /metrics.
SIGNING = frozenset({"baseline-post", scenarios.HSM_RAW})
# With [server] workers, whichever worker answers /metrics adds the others' series as they last
# published them, once a second (docs/api.md): wait that long before reading it.
WORKERS_PUBLISH_WAIT_S = 1.25
# One round's results, in the selected order.
Round = list[ScenarioResult]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description="Benchmark the signer against a plain aiohttp baseline."
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per scenario (5)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every scenario N times, interleaved, and report the median round (1)",
    )
    parser.add_argument(
        "--loader",
        choices=("auto", "wrk", "aiohttp"),
        default="auto",
        help="auto: wrk if installed",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (1)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="the signer's [server] workers (1; the targets are for one; the baseline stays one)",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=DEFAULT_EVENT_LOOP,
        help=f"the signer's [server] event_loop, and the baseline's loop ({DEFAULT_EVENT_LOOP})",
    )
    parser.add_argument(
        "--scenarios", default=",".join(scenarios.NAMES), help="comma-separated subset (all)"
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-chart", action="store_true", help="do not write the PNG chart")
    parser.add_argument("--compare", type=Path, help="a previous results JSON to compare with")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--profile",
        nargs="?",
        const=PROFILED,
        metavar="SCENARIO",
        help=f"after measuring SCENARIO ({PROFILED}), run it again under py-spy and summarise",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(names) - set(scenarios.NAMES))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(scenarios.NAMES)}"
        )
    if args.profile is not None and args.profile not in names:
        parser.error(f"--profile {args.profile}: that scenario is not selected")
    if min(args.duration, args.connections, args.wrk_threads, args.workers, args.rounds) < 1:
        parser.error(
            "--duration, --connections, --wrk-threads, --workers and --rounds must be at least 1"
        )
    args.selected = [name for name in scenarios.NAMES if name in names]
    return args


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def measure_hsm_raw(args: argparse.Namespace) -> ScenarioResult:
    """The raw in-process HSM sign rate, in a child process."""
    scenario = scenarios.hsm_raw()
    progress(f"{scenario.name}: {args.duration}s, {args.connections} concurrent callers")
    try:
        measurement, cpu_s = hsm_rate.run_subprocess(
            alg_name="ES256",
            workers=args.connections,
            duration_s=float(args.duration),
            cwd=servers.REPO,
        )
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        return scenarios.result_of(scenario, Status.FAILED, reason=str(exc))
    result = scenarios.result_of(scenario, Status.OK, measurement=measurement)
    return dataclasses.replace(result, cpu_ms_per_item=per_item_ms(result, cpu_s))


def per_item_ms(
    result: ScenarioResult, cpu_s: float, *, requests: int | None = None
) -> float | None:
    """CPU milliseconds per item, over the server's request count if it has one.

    Without ``requests``, over what the load generator saw, errors included: they cost CPU too.
    """
    m = result.measurement
    if requests is None and m is not None:
        requests = m.requests + m.errors
    if not requests:
        return None
    return cpu_s * 1000.0 / (requests * result.items_per_request)


def run_one(
    scenario: scenarios.Scenario,
    loader: Loader,
    args: argparse.Namespace,
    *,
    server: servers.Process,
    metrics_url: str | None,
    settle_s: float = 0.0,
) -> ScenarioResult:
    """One HTTP scenario, with the CPU the serving process spent on it per item.

    With ``metrics_url`` (the signer), the request count comes from the signer's ``/metrics``,
    and a signing scenario gets its stage breakdown. Both are read once the server is idle
    again, so the requests a load tool abandons at its deadline are counted with their CPU,
    and ``settle_s`` after that (for every worker to have published its series).
    """
    progress(f"{scenario.name}: {args.duration}s at {args.connections} connections")
    if metrics_url:
        time.sleep(settle_s)
    before = stages.scrape(metrics_url) if metrics_url else None
    cpu_before = server.cpu_seconds()
    result = scenarios.run(
        scenario,
        lambda spec: loader.measure(spec, connections=args.connections, duration_s=args.duration),
    )
    server.wait_idle()
    cpu_after = server.cpu_seconds()
    if metrics_url:
        time.sleep(settle_s)
    after = stages.scrape(metrics_url) if metrics_url else None
    if result.status is not Status.OK:
        progress(f"{scenario.name}: {result.status.value}: {result.reason}")
        return result
    served = None
    if before is not None and after is not None:
        served = stages.requests_served(before, after)
        if scenario.reference in SIGNING:
            result = dataclasses.replace(result, stages=stages.breakdown(before, after))
    if cpu_before is not None and cpu_after is not None:
        cpu_ms = per_item_ms(result, cpu_after - cpu_before, requests=served)
        result = dataclasses.replace(result, cpu_ms_per_item=cpu_ms)
    return result


def failed_all(args: argparse.Namespace, reason: str) -> list[ScenarioResult]:
    """Every selected HTTP scenario, failed for ``reason`` (a server did not start)."""
    progress(reason)
    placeholders = scenarios.http_scenarios(signer="", baseline="", token="", etag="")
    first_line = reason.splitlines()[0]
    return [
        scenarios.result_of(scenario, Status.FAILED, reason=first_line)
        for scenario in placeholders
        if scenario.name in args.selected
    ]


def measure_raw(args: argparse.Namespace) -> Round:
    """One round's ``hsm-raw``, if it is selected."""
    return [measure_hsm_raw(args)] if scenarios.HSM_RAW in args.selected else []


def run_rounds(
    args: argparse.Namespace, first: Round, http_round: Callable[[], Round]
) -> list[Round]:
    """``args.rounds`` rounds: ``hsm-raw`` first (round 1's is ``first``), then the HTTP ones."""
    rounds = [first + http_round()]
    for number in range(2, args.rounds + 1):
        progress(f"round {number} of {args.rounds}")
        rounds.append(measure_raw(args) + http_round())
    return rounds


def measure_rounds(args: argparse.Namespace, loader: Loader, workdir: Path) -> list[Round]:
    """Every round's results, each in the selected order.

    Round 1's ``hsm-raw`` is measured before any server starts, as in a one-round run; the
    servers then stay up for every round, and later rounds measure ``hsm-raw`` with them idle.
    """
    if args.rounds > 1:
        progress(f"round 1 of {args.rounds}")
    first = measure_raw(args)
    if all(name == scenarios.HSM_RAW for name in args.selected):
        return run_rounds(args, first, list)  # no HTTP scenario: rounds of hsm-raw alone
    return measure_http(args, loader, workdir, first=first)


def measure_http(
    args: argparse.Namespace, loader: Loader, workdir: Path, *, first: Round
) -> list[Round]:
    """Start the signer and the baseline, and run the rounds (one, if a server does not start)."""
    progress("signer init + serve (one ring per algorithm)")
    try:
        setup = servers.init_signer(
            workdir / "signer", workers=args.workers, event_loop=args.event_loop
        )
        signer = servers.start_signer(setup)
    except (RuntimeError, OSError) as exc:
        return [first + failed_all(args, f"the signer did not start: {exc}")]
    try:
        try:
            body, etag = servers.jwks_of(setup.url)
            baseline = servers.start_baseline(
                workdir, jwks_bytes=len(body), event_loop=args.event_loop
            )
        except (RuntimeError, OSError) as exc:
            return [first + failed_all(args, f"the JWKS or the baseline failed: {exc}")]
        try:
            return run_on_servers(
                args, loader, first=first, setup=setup, signer=signer, baseline=baseline, etag=etag
            )
        finally:
            baseline.stop()
    finally:
        signer.stop()


def run_on_servers(
    args: argparse.Namespace,
    loader: Loader,
    *,
    first: Round,
    setup: servers.SignerSetup,
    signer: servers.Process,
    baseline: servers.Process,
    etag: str,
) -> list[Round]:
    """Every round against the running servers, then ``--profile``."""
    chosen = [
        scenario
        for scenario in scenarios.http_scenarios(
            signer=setup.url, baseline=baseline.url, token=setup.token, etag=etag
        )
        if scenario.name in args.selected
    ]

    def http_round() -> Round:
        return run_http_round(args, loader, chosen, setup=setup, signer=signer, baseline=baseline)

    rounds = run_rounds(args, first, http_round)
    profile_after(args, loader, chosen, signer=signer, rounds=rounds)
    return rounds


def run_http_round(
    args: argparse.Namespace,
    loader: Loader,
    chosen: Sequence[scenarios.Scenario],
    *,
    setup: servers.SignerSetup,
    signer: servers.Process,
    baseline: servers.Process,
) -> Round:
    """One round: each of the ``chosen`` HTTP scenarios in order, against running servers."""
    results = []
    for scenario in chosen:
        on_baseline = scenario.name.startswith("baseline")
        result = run_one(
            scenario,
            loader,
            args,
            server=baseline if on_baseline else signer,
            metrics_url=None if on_baseline else setup.url,
            settle_s=WORKERS_PUBLISH_WAIT_S if args.workers > 1 else 0.0,
        )
        results.append(result)
    return results


def profile_after(
    args: argparse.Namespace,
    loader: Loader,
    chosen: Sequence[scenarios.Scenario],
    *,
    signer: servers.Process,
    rounds: Sequence[Round],
) -> None:
    """``--profile``: its scenario once more under py-spy, if every round of it went well."""
    scenario = next((s for s in chosen if s.name == args.profile), None)
    if scenario is None or scenario.request is None:
        return
    if any(r.status is not Status.OK for one in rounds for r in one if r.name == scenario.name):
        return
    profile.profile_scenario(scenario.request, pid=signer.pid, loader=loader.measure, args=args)
    signer.wait_idle()


def machine_info(loader: Loader, load: tuple[float, float, float]) -> dict[str, Any]:
    """What the results must say about where they were measured."""
    return {
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews every number: a busy start is worth knowing about.
        "load_average_at_start": [round(value, 2) for value in load],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        "loader": loader.describe(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; exit 1 only if a scenario failed (targets never fail a run)."""
    args = parse_args(argv)
    previous: list[ScenarioResult] | None = None
    if args.compare is not None:  # read first: it may be the latest.json this run replaces
        previous = results_from_json(json.loads(args.compare.read_text(encoding="utf-8")))
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        loader = choose_loader(args.loader, threads=args.wrk_threads, workdir=workdir)
        progress(f"loader: {loader.describe()}")
        results = combine_rounds(measure_rounds(args, loader, workdir))
        machine = machine_info(loader, load)
    order = {name: index for index, name in enumerate(scenarios.NAMES)}
    results.sort(key=lambda result: order[result.name])
    settings = {
        "duration_s": args.duration,
        "connections": args.connections,
        "signer_workers": args.workers,
        "event_loop": args.event_loop,
        "rounds": args.rounds,
        "batch_size": scenarios.BATCH_SIZE,
    }
    command = ["scripts/bench", *(argv if argv is not None else sys.argv[1:])]
    obj = run_json(
        results, started_at=started_at, command=command, settings=settings, machine=machine
    )
    report.print_report(obj, results, previous=previous, markdown=args.markdown)
    report.write_results(obj, results, args.output_dir, chart=not args.no_chart)
    return 1 if any(result.status is Status.FAILED for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
