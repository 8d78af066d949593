"""scripts/bench: statistics, ratios and targets, rendering, wrk parsing, on synthetic numbers.

One slow test runs the real thing for about a second per scenario; speed is never asserted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import tomllib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from scripts.benchlib import baseline, main, profile, report, scenarios, servers, stages, wrk
from scripts.benchlib.loadgen import RequestSpec, closed_loop
from scripts.benchlib.results import (
    ScenarioResult,
    Status,
    check_targets,
    combine_rounds,
    median_round,
    paired_ratio,
    ratios_of,
    results_from_json,
    run_json,
)
from scripts.benchlib.stats import Measurement, change_percent, percentile, summarize


def measured(rps: float, *, p99_ms: float = 10.0, duration_s: float = 2.0) -> Measurement:
    """A measurement of ``rps`` over ``duration_s`` with the given p99."""
    return Measurement(
        requests=round(rps * duration_s),
        errors=0,
        duration_s=duration_s,
        p50_ms=p99_ms / 2,
        p90_ms=p99_ms * 0.8,
        p99_ms=p99_ms,
        p999_ms=p99_ms * 1.5,
    )


def result(
    name: str,
    rps: float | None,
    *,
    reference: str | None = None,
    p99_ms: float = 10.0,
    items: int = 1,
) -> ScenarioResult:
    """A scenario result; ``rps=None`` makes it unavailable."""
    return ScenarioResult(
        name=name,
        description=name,
        reference=reference,
        items_per_request=items,
        status=Status.OK if rps is not None else Status.UNAVAILABLE,
        reason=None if rps is not None else "POST /x answered 404",
        measurement=None if rps is None else measured(rps, p99_ms=p99_ms),
    )


def synthetic_run() -> list[ScenarioResult]:
    """Numbers chosen to sit on both sides of each target."""
    return [
        result("hsm-raw", 1000.0),
        result("baseline-get", 1000.0),
        result("jwks-200", 950.0, reference="baseline-get"),
        result("jwks-304", 1200.0, reference="baseline-get"),
        result("baseline-post", 800.0, p99_ms=10.0),
        result("sign-es256", 300.0, reference="baseline-post", p99_ms=15.0),
        result("batch-es256", 7.0, reference="hsm-raw", items=100),
    ]


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 1001)]
    assert percentile(samples, 50) == 500.0
    assert percentile(samples, 99) == 990.0
    assert percentile(samples, 99.9) == 999.0
    assert percentile(samples, 100) == 1000.0
    assert percentile([7.0], 99.9) == 7.0


def test_percentile_of_nothing_is_nan_and_bad_q_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0)


def test_summarize_reports_milliseconds_and_rate() -> None:
    m = summarize([0.003, 0.001, 0.002, 0.004], errors=1, duration_s=2.0)
    assert (m.requests, m.errors, m.rps) == (4, 1, 2.0)
    assert (m.p50_ms, m.p99_ms, m.p999_ms) == pytest.approx((2.0, 4.0, 4.0))


def test_measurement_survives_json() -> None:
    m = measured(1234.5, p99_ms=3.25)
    assert Measurement.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_change_percent_is_relative_and_none_from_zero() -> None:
    assert change_percent(200.0, 150.0) == pytest.approx(-25.0)
    assert change_percent(0.0, 5.0) is None


def test_ratios_use_items_per_second_and_p99() -> None:
    run = {r.name: r for r in synthetic_run()}
    assert ratios_of(run["sign-es256"], run).throughput == pytest.approx(300 / 800)
    assert ratios_of(run["sign-es256"], run).p99 == pytest.approx(1.5)
    # Batch: 7 requests/s of 100 tokens against 1000 raw signatures/s.
    assert ratios_of(run["batch-es256"], run).throughput == pytest.approx(0.7)
    assert ratios_of(run["batch-es256"], run).p99 is None  # a batch is not one signature
    assert ratios_of(run["baseline-get"], run).throughput is None


def test_targets_are_reported_met_or_not() -> None:
    checks = {(c.target.scenario, c.target.metric.value): c for c in check_targets(synthetic_run())}
    assert checks["jwks-200", "throughput"].met is True  # 0.95 >= 0.9
    assert checks["sign-es256", "throughput"].met is False  # 0.375 < 0.5
    assert checks["sign-es256", "p99"].met is True  # 1.5 <= 2
    assert checks["batch-es256", "throughput"].met is True  # exactly 0.7


def test_an_unavailable_scenario_leaves_its_target_unmeasured() -> None:
    run = [*synthetic_run()[:-1], result("batch-es256", None, reference="hsm-raw", items=100)]
    (batch,) = [c for c in check_targets(run) if c.target.scenario == "batch-es256"]
    assert (batch.value, batch.met) == (None, None)


def test_table_shows_rates_ratios_and_verdicts() -> None:
    text = report.render_table(synthetic_run())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["scenario", "req/s", "items/s"]
    (sign,) = [line for line in lines if line.startswith("sign-es256")]
    assert "300.0" in sign
    assert "0.38x" in sign
    assert "rate >=0.5x NOT met" in sign
    assert "p99 <=2x met" in sign
    (batch,) = [line for line in lines if line.startswith("batch-es256")]
    assert "700.0" in batch  # tokens/s
    assert "NOT met" in report.render_targets(synthetic_run())


def test_markdown_table_has_one_cell_per_header() -> None:
    lines = report.render_table(synthetic_run(), markdown=True).splitlines()
    assert len(lines) == 2 + len(synthetic_run())
    assert {line.count("|") for line in lines} == {len(report.HEADERS) + 1}


def test_unavailable_scenario_is_a_row_with_its_reason() -> None:
    run = [result("batch-es256", None, reference="hsm-raw", items=100)]
    row = report.render_table(run).splitlines()[2]
    assert "unavailable" in row
    assert "answered 404" in row


def test_results_json_round_trips_and_carries_ratios() -> None:
    obj = run_json(
        synthetic_run(),
        started_at="2026-01-01T00:00:00Z",
        command=["scripts/bench"],
        settings={"duration_s": 2},
        machine={"cpu_count": 2},
    )
    text = json.dumps(obj)
    assert results_from_json(json.loads(text)) == synthetic_run()
    by_name = {s["name"]: s for s in obj["scenarios"]}
    assert by_name["batch-es256"]["items_per_s"] == pytest.approx(700.0)
    assert by_name["jwks-200"]["ratio_throughput"] == pytest.approx(0.95)
    assert [t["met"] for t in obj["targets"]] == [True, False, True, True]


def rounds_of(name: str, *rates: float) -> list[ScenarioResult]:
    """``name`` measured once per rate, each round with its own p99 (its round number)."""
    return [result(name, rate, p99_ms=float(n)) for n, rate in enumerate(rates, start=1)]


def test_median_round_of_an_odd_count_is_the_middle_rate() -> None:
    chosen = median_round(rounds_of("jwks-200", 900.0, 700.0, 1100.0))
    assert chosen.items_per_s == pytest.approx(900.0)
    assert chosen.measurement is not None
    assert chosen.measurement.p99_ms == 1.0  # the whole round, not a mix of rounds
    assert chosen.round_rates == pytest.approx((900.0, 700.0, 1100.0))  # in round order


def test_median_round_of_an_even_count_is_the_lower_middle() -> None:
    chosen = median_round(rounds_of("jwks-200", 1000.0, 800.0, 1200.0, 900.0))
    assert chosen.items_per_s == pytest.approx(900.0)
    assert chosen.round_rates == pytest.approx((1000.0, 800.0, 1200.0, 900.0))


def test_one_failed_round_fails_the_scenario_with_its_reason() -> None:
    failed = ScenarioResult(
        name="jwks-200",
        description="jwks-200",
        reference="baseline-get",
        status=Status.FAILED,
        reason="RuntimeError: expected 200, got 500",
    )
    ok = result("jwks-200", 1000.0, reference="baseline-get")
    chosen = median_round([ok, failed, ok])
    assert chosen.status is Status.FAILED
    assert chosen.reason == "round 2 of 3: RuntimeError: expected 200, got 500"
    assert chosen.measurement is None


def test_a_single_round_is_reported_as_measured() -> None:
    (only,) = rounds_of("jwks-200", 950.0)
    assert median_round([only]) == dataclasses.replace(only, round_rates=(950.0,))


def test_rounds_combine_per_scenario_in_first_seen_order() -> None:
    rounds = [
        [result("baseline-get", 1000.0), result("jwks-200", 900.0)],
        [result("baseline-get", 800.0), result("jwks-200", 700.0)],
        [result("baseline-get", 1200.0), result("jwks-200", 800.0)],
    ]
    combined = combine_rounds(rounds)
    assert [r.name for r in combined] == ["baseline-get", "jwks-200"]
    assert [r.items_per_s for r in combined] == pytest.approx([1000.0, 800.0])


def test_with_rounds_the_rate_ratio_is_the_median_of_the_per_round_ratios() -> None:
    """Each round pairs a scenario with its reference measured seconds before it."""
    rates = {"baseline-get": (1000.0, 1200.0, 800.0), "jwks-200": (700.0, 1140.0, 800.0)}
    rounds = [
        [
            result("baseline-get", rates["baseline-get"][i]),
            result("jwks-200", rates["jwks-200"][i], reference="baseline-get"),
        ]
        for i in range(3)
    ]
    combined = {r.name: r for r in combine_rounds(rounds)}

    # Per round: 0.7, 0.95, 1.0. The two median rounds (1000 and 800) would say 0.8.
    assert ratios_of(combined["jwks-200"], combined).throughput == pytest.approx(0.95)
    assert paired_ratio((9.0, 1.0), (10.0, 10.0)) == pytest.approx(0.5)  # even: the mean of two
    assert paired_ratio((900.0,), (1000.0,)) is None  # one round: the plain ratio applies
    assert paired_ratio((900.0, 950.0), (1000.0,)) is None


def test_round_rates_survive_json() -> None:
    run = [dataclasses.replace(r, round_rates=(500.0, 612.5)) for r in synthetic_run()]
    obj = run_json(run, started_at="2026-01-01T00:00:00Z", command=[], settings={}, machine={})
    assert obj["scenarios"][0].get("round_rates") == [500.0, 612.5]
    assert results_from_json(json.loads(json.dumps(obj))) == run


def test_results_json_without_round_rates_is_still_read() -> None:
    obj = run_json(
        synthetic_run(), started_at="2026-01-01T00:00:00Z", command=[], settings={}, machine={}
    )
    for scenario in obj["scenarios"]:
        del scenario["round_rates"]
    assert results_from_json(json.loads(json.dumps(obj))) == synthetic_run()


def test_table_shows_the_spread_of_several_rounds_only() -> None:
    one_round = [dataclasses.replace(r, round_rates=(100.0,)) for r in synthetic_run()]
    assert report.render_table(one_round) == report.render_table(synthetic_run())
    assert report.SPREAD_HEADER not in report.render_table(one_round)
    run = [dataclasses.replace(r, round_rates=(950.0, 1200.0, 1010.0)) for r in synthetic_run()]
    lines = report.render_table(run).splitlines()
    assert re.split(r"\s{2,}", lines[0])[:4] == ["scenario", "req/s", "items/s", "items/s min-max"]
    (jwks,) = [line for line in lines if line.startswith("jwks-200")]
    assert "950.0-1,200.0" in jwks
    # Every scenario here has the same round rates, so the paired per-round ratio is 1.
    assert "1.00x" in jwks


def test_markdown_table_with_several_rounds_has_one_cell_per_header() -> None:
    run = [dataclasses.replace(r, round_rates=(1.0, 2.0)) for r in synthetic_run()]
    lines = report.render_table(run, markdown=True).splitlines()
    assert lines[0].startswith("| scenario | req/s | items/s | items/s min-max |")
    assert {line.count("|") for line in lines} == {len(report.HEADERS) + 2}


def test_rounds_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.parse_args([]).rounds == 1
    with pytest.raises(SystemExit):
        main.parse_args(["--rounds", "0"])
    assert "--rounds must be at least 1" in capsys.readouterr().err


def test_comparison_shows_relative_change() -> None:
    before = synthetic_run()
    now = [result("sign-es256", 450.0, reference="baseline-post", p99_ms=7.5)]
    text = report.render_comparison(before, now)
    (line,) = [line for line in text.splitlines() if line.startswith("sign-es256")]
    assert "+50.0%" in line
    assert "-50.0%" in line


WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8000/jwks.json
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  20.00ms   90.00%
  Latency Distribution
     50%    2.84ms
     75%    3.20ms
     90%    4.01ms
     99%    5.56ms
  20330 requests in 2.00s, 30.00MB read
  Non-2xx or 3xx responses: 30
Requests/sec:  10164.90
Transfer/sec:     15.00MB
BENCH {"requests": 20330, "duration_us": 2000000, "status_errors": 30, "socket_errors": 2, \
"p50_us": 2841.0, "p90_us": 4012.0, "p99_us": 5561.0, "p999_us": 8100.0}
"""


def test_wrk_output_is_parsed_from_the_bench_line() -> None:
    m = wrk.parse_output(WRK_OUTPUT.replace("\\\n", ""))
    assert (m.requests, m.errors, m.duration_s) == (20300, 32, 2.0)
    assert (m.p50_ms, m.p90_ms, m.p99_ms, m.p999_ms) == pytest.approx((2.841, 4.012, 5.561, 8.1))


def test_wrk_latency_distribution_fills_in_missing_percentiles() -> None:
    text = WRK_OUTPUT.replace("\\\n", "").replace('"p99_us": 5561.0, ', "")
    assert wrk.latency_distribution(text) == pytest.approx({50: 2.84, 75: 3.2, 90: 4.01, 99: 5.56})
    assert wrk.parse_output(text).p99_ms == pytest.approx(5.56)


def test_wrk_output_without_the_bench_line_is_refused() -> None:
    with pytest.raises(ValueError, match="BENCH"):
        wrk.parse_output("Running 2s test\n")


def test_lua_string_escapes_quotes_backslashes_and_controls() -> None:
    assert wrk.lua_string('a"b\\c\n1') == '"a\\"b\\\\c\\0101"'
    assert wrk.lua_string("é") == '"\\195\\169"'


def test_lua_script_sets_method_body_and_headers() -> None:
    spec = RequestSpec(
        method="POST", url="http://x/", headers={"If-None-Match": '"tag"'}, body=b"{}"
    )
    script = wrk.lua_script(spec)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = "{}"' in script
    assert 'wrk.headers["If-None-Match"] = "\\"tag\\""' in script
    assert "latency:percentile(99.9)" in script


def test_preflight_makes_a_missing_endpoint_unavailable() -> None:
    (batch,) = [
        s
        for s in scenarios.http_scenarios(
            signer="http://s", baseline="http://b", token="t", etag="e"
        )
        if s.name == "batch-es256"
    ]
    with pytest.raises(scenarios.Unavailable, match="404 not_found"):
        scenarios.preflight(batch, send=lambda spec: (404, b'{"code": "not_found"}'))
    with pytest.raises(RuntimeError, match="expected 100 tokens, got 3"):
        scenarios.preflight(batch, send=lambda spec: (200, b'{"tokens": [1, 2, 3]}'))
    scenarios.preflight(batch, send=lambda spec: (200, json.dumps({"tokens": [0] * 100}).encode()))


def test_jwks_304_scenario_sends_the_etag_and_expects_304() -> None:
    found = scenarios.http_scenarios(signer="http://s", baseline="http://b", token="t", etag='"x"')
    (not_modified,) = [s for s in found if s.name == "jwks-304"]
    assert not_modified.request is not None
    assert not_modified.request.headers == {"If-None-Match": '"x"'}
    assert not_modified.request.expect == 304
    assert [s.name for s in found] == [n for n in scenarios.NAMES if n != scenarios.HSM_RAW]


async def test_closed_loop_counts_successes_and_errors() -> None:
    calls = 0

    async def operation() -> bool:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)
        if calls % 4 == 0:
            raise TimeoutError
        return calls % 4 != 1

    m = await closed_loop(operation, workers=3, duration_s=0.05)
    assert m.requests + m.errors == calls
    assert m.requests > 0
    assert m.errors > 0


async def test_baseline_serves_jwks_sized_bytes_and_parses_posts() -> None:
    async with TestClient(TestServer(baseline.create_app(1234))) as client:
        got = await client.get(baseline.GET_PATH)
        body = await got.read()
        assert (got.status, len(body)) == (200, 1234)
        json.loads(body)
        posted = await client.post(baseline.POST_PATH, data=scenarios.SIGN_BODY)
        assert await posted.json() == {"ok": True, "claims": 1}


def test_profile_summary_splits_samples_by_thread_package_and_function() -> None:
    lines = [
        "thread (1): MainThread;run (aiohttp/web.py:10);handle (signer/app.py:5) 6",
        "thread (1): MainThread;run (aiohttp/web.py:11) 2",
        "thread (2): pkcs11_0;_sign (signer/hsm/pkcs11.py:9);sign (pkcs11/types.py:3) 2",
    ]
    summary = profile.parse(lines)
    assert summary.total == 10
    assert summary.threads == {"MainThread": 8, "pkcs11_0": 2}
    assert summary.packages == {"signer": 6, "aiohttp": 2, "pkcs11": 2}
    assert summary.inclusive["run (aiohttp/web.py)"] == 8
    assert "60.0%  signer" in profile.render(summary)


METRICS_BEFORE = """# HELP signer_hsm_operation_duration_seconds PKCS#11 operation latency.
signer_hsm_operation_duration_seconds_sum{operation="sign"} 1.0
signer_hsm_operation_duration_seconds_count{operation="sign"} 100.0
signer_hsm_operation_duration_seconds_sum{operation="generate"} 9.0
signer_hsm_operation_duration_seconds_count{operation="generate"} 3.0
signer_http_request_duration_seconds_sum{route="/v1/rings/{ring}/jwt"} 2.0
signer_http_request_duration_seconds_count{route="/v1/rings/{ring}/jwt"} 100.0
"""
METRICS_AFTER = """signer_hsm_operation_duration_seconds_sum{operation="sign"} 3.0
signer_hsm_operation_duration_seconds_count{operation="sign"} 300.0
signer_hsm_operation_duration_seconds_sum{operation="generate"} 9.0
signer_hsm_operation_duration_seconds_count{operation="generate"} 3.0
signer_http_request_duration_seconds_sum{route="/v1/rings/{ring}/jwt"} 6.0
signer_http_request_duration_seconds_count{route="/v1/rings/{ring}/jwt"} 300.0
signer_audit_batch_records_sum 50.0
signer_audit_batch_records_count 10.0
"""


def test_stages_are_means_over_the_scenario_only() -> None:
    """Deltas between two scrapes; route labels may hold braces; other operations ignored."""
    means = stages.breakdown(stages.parse(METRICS_BEFORE), stages.parse(METRICS_AFTER))
    assert means == {"request ms": 20.0, "hsm sign ms": 10.0, "records/commit": 5.0}


def test_stage_table_lists_signer_scenarios_only() -> None:
    run = [
        *synthetic_run()[:-1],
        dataclasses.replace(synthetic_run()[-1], stages={"hsm sign ms": 1.5}),
    ]
    table = report.render_stages(run)
    assert table is not None
    assert [line.split()[0] for line in table.splitlines()] == ["scenario", "batch-es256"]
    assert "1.500" in table
    assert report.render_stages(synthetic_run()) is None


def test_signer_config_adds_a_bench_principal_and_a_ring_per_alg() -> None:
    extra = tomllib.loads(servers.extra_config("sgn_bench_x"))
    (principal,) = extra["principals"]
    assert principal["token_sha256"] == hashlib.sha256(b"sgn_bench_x").hexdigest()
    assert principal["permissions"] == ["jwt:sign:*"]
    assert {ring["name"]: ring["alg"] for ring in extra["rings"]} == {
        "es384": "ES384",
        "rs256": "RS256",
        "ps256": "PS256",
        "eddsa": "EdDSA",
    }


def test_cpu_per_item_prefers_the_servers_own_request_count() -> None:
    batch = result("batch-es256", 5.0, reference="hsm-raw", items=100)  # 10 requests in 2 s
    assert main.per_item_ms(batch, 2.0) == pytest.approx(2.0)  # 2000 ms over 1000 tokens
    assert main.per_item_ms(batch, 2.0, requests=20) == pytest.approx(1.0)
    assert main.per_item_ms(result("x", None), 1.0) is None


def test_an_unknown_event_loop_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """By the bench, and by the baseline it starts on the same loop."""
    with pytest.raises(SystemExit):
        main.parse_args(["--event-loop", "trio"])
    with pytest.raises(SystemExit):
        baseline.main(["--port", "1", "--jwks-bytes", "100", "--event-loop", "trio"])
    assert capsys.readouterr().err.count("invalid choice: 'trio'") == 2


def test_unknown_scenarios_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(["--scenarios", "jwks-200,nope"])
    assert "unknown scenario(s) nope" in capsys.readouterr().err


def test_chart_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    assert report.write_chart(synthetic_run(), path, title="test") is None
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_short_real_run_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """About a second per scenario against a real signer, with the built-in load generator."""
    names = "hsm-raw,baseline-get,jwks-200,jwks-304,baseline-post,sign-es256,batch-es256"
    options = ["--duration", "1", "--connections", "4", "--loader", "aiohttp", "--no-chart"]
    code = main.main([*options, "--scenarios", names, "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    latest = json.loads((tmp_path / "latest.json").read_text())
    statuses = {s["name"]: s["status"] for s in latest["scenarios"]}
    assert list(statuses) == names.split(",")
    assert statuses["batch-es256"] in ("ok", "unavailable")
    assert {v for k, v in statuses.items() if k != "batch-es256"} == {"ok"}
    assert latest["machine"]["loader"].startswith("aiohttp client")
    assert latest["settings"]["event_loop"] == "uvloop"
    assert "targets (reported, not asserted)" in out


@pytest.mark.slow
def test_with_two_workers_the_signing_stages_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read from whichever worker answers /metrics, which sums both (tests/e2e/test_workers);
    on asyncio's own loop, for both servers."""
    options = ["--duration", "1", "--connections", "4", "--loader", "aiohttp", "--no-chart"]
    options += ["--workers", "2", "--event-loop", "asyncio"]
    names = "baseline-post,sign-es256"
    code = main.main([*options, "--scenarios", names, "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "event loop: asyncio" in out
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["settings"]["event_loop"] == "asyncio"
    sign = next(s for s in latest["scenarios"] if s["name"] == "sign-es256")
    assert sign["status"] == "ok"
    assert sign["stages"]["sign+audit ms"] > 0
    assert sign["stages"]["records/commit"] >= 1
