"""Driving ``wrk``: a Lua script per request, and parsing what it prints.

``wrk`` is a closed-loop C load generator: ``-c N`` connections, each sending its next request
when the last answer arrives, like ``loadgen``. The request (method, headers, body) is set from a
generated Lua script; the script's ``done()`` prints one ``BENCH {json}`` line with exact counts
and exact percentiles, including p99.9, which ``--latency``'s distribution (50/75/90/99%) does
not show.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from scripts.benchlib.loadgen import RequestSpec
from scripts.benchlib.stats import Measurement

# wrk's own per-request timeout: a batch of 100 signatures queued behind 31 others takes seconds.
TIMEOUT = "60s"
_DISTRIBUTION = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_BENCH = re.compile(r"^BENCH (\{.*\})\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %d, \\"duration_us\\": %d, \\"status_errors\\": %d, "
    .. "\\"socket_errors\\": %d, \\"p50_us\\": %.1f, \\"p90_us\\": %.1f, "
    .. "\\"p99_us\\": %.1f, \\"p999_us\\": %.1f}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


def find() -> str | None:
    """Path of the ``wrk`` executable, if installed."""
    return shutil.which("wrk")


def version(executable: str) -> str:
    """``wrk``'s version line (it prints it with the usage text and exits 1)."""
    result = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"


def lua_string(value: str | bytes) -> str:
    """A Lua double-quoted string literal holding exactly ``value``'s bytes."""
    data = value.encode() if isinstance(value, str) else value
    out = []
    for byte in data:
        if byte in (0x22, 0x5C):  # " and \
            out.append("\\" + chr(byte))
        elif byte < 0x20 or byte >= 0x7F:
            out.append(f"\\{byte:03d}")  # three digits: a following digit is not absorbed
        else:
            out.append(chr(byte))
    return '"' + "".join(out) + '"'


def lua_script(spec: RequestSpec) -> str:
    """The Lua script that makes ``wrk`` send ``spec`` and report in a parseable form."""
    lines = [f"wrk.method = {lua_string(spec.method)}"]
    if spec.body is not None:
        lines.append(f"wrk.body = {lua_string(spec.body)}")
    lines += [
        f"wrk.headers[{lua_string(name)}] = {lua_string(value)}"
        for name, value in spec.headers.items()
    ]
    return "\n".join(lines) + "\n" + _DONE


def command(
    executable: str,
    spec: RequestSpec,
    *,
    script: Path,
    connections: int,
    duration_s: int,
    threads: int,
) -> list[str]:
    """The ``wrk`` command line for one scenario."""
    return [
        executable,
        "--latency",
        "-t",
        str(min(threads, connections)),  # wrk refuses more threads than connections
        "-c",
        str(connections),
        "-d",
        f"{duration_s}s",
        "--timeout",
        TIMEOUT,
        "-s",
        str(script),
        spec.url,
    ]


def parse_output(text: str) -> Measurement:
    """A ``Measurement`` from ``wrk --latency`` output with the script's ``BENCH`` line.

    Counts come from ``BENCH``; non-2xx/3xx answers and socket errors are errors. Percentiles
    come from ``BENCH`` too (exact microseconds from wrk's histogram); the ``Latency
    Distribution`` block that ``--latency`` prints (the same histogram, rounded to three digits)
    stands in for any that ``BENCH`` lacks, e.g. from an older script.
    """
    found = _BENCH.search(text)
    if found is None:
        raise ValueError("wrk printed no BENCH line; did the Lua script run?\n" + text[-2000:])
    bench = json.loads(found.group(1))
    distribution = latency_distribution(text)

    def percentile_ms(key: str, q: int) -> float:
        if key in bench:
            return float(bench[key]) / 1000.0
        if q in distribution:
            return distribution[q]
        raise ValueError(f"wrk reported no {q}th percentile")

    status_errors = int(bench["status_errors"])
    return Measurement(
        requests=int(bench["requests"]) - status_errors,
        errors=status_errors + int(bench["socket_errors"]),
        duration_s=int(bench["duration_us"]) / 1e6,
        p50_ms=percentile_ms("p50_us", 50),
        p90_ms=percentile_ms("p90_us", 90),
        p99_ms=percentile_ms("p99_us", 99),
        p999_ms=float(bench["p999_us"]) / 1000.0,
    )


def latency_distribution(text: str) -> dict[int, float]:
    """``--latency``'s ``Latency Distribution`` block: percentile -> milliseconds."""
    return {
        int(match.group(1)): float(match.group(2)) * _UNIT_MS[match.group(3)]
        for match in _DISTRIBUTION.finditer(text)
    }


def run(
    executable: str,
    spec: RequestSpec,
    *,
    workdir: Path,
    connections: int,
    duration_s: int,
    threads: int,
) -> Measurement:
    """Run ``wrk`` once for ``spec`` and parse its result."""
    script = workdir / "wrk-request.lua"
    script.write_text(lua_script(spec), encoding="utf-8")
    argv = command(
        executable,
        spec,
        script=script,
        connections=connections,
        duration_s=duration_s,
        threads=threads,
    )
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration_s + 120
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return parse_output(result.stdout)
