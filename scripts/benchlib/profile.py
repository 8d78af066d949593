"""``--profile``: sample the running ``signer serve`` with py-spy under load, and summarise.

py-spy (``pip install py-spy``; it needs ptrace, e.g. root) attaches to the signer process from
outside, so the profile is of the real server: every thread, on-CPU samples only, at 100 Hz,
without pausing the process (``--nonblocking``). Its raw output is collapsed stacks,
``thread (tid): name;frame;frame;... count`` with frames as ``function (file:line)``; the summary
splits the samples by thread, by the package of the innermost Python frame, and by function.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.benchlib.loadgen import RequestSpec
from scripts.benchlib.stats import Measurement

TOP = 15


@dataclass(slots=True)
class Profile:
    """Sample counts from collapsed stacks."""

    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)  # by the innermost frame's package
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    thread_self: dict[str, Counter[str]] = field(default_factory=dict)  # thread -> self time


def _function(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``: lines of one function add up."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _package(frame: str) -> str:
    """The top-level package (or module file) a frame's code lives in."""
    where = frame.partition(" (")[2].rsplit(":", 1)[0]
    return where.split("/", 1)[0] if "/" in where else where or "?"


def _thread(label: str) -> str:
    """``thread (1234): ThreadPoolExecutor-0_0`` -> ``ThreadPoolExecutor-0_0``."""
    return label.partition(": ")[2] or label


def parse(lines: Iterable[str]) -> Profile:
    """Aggregate py-spy ``--format raw --threads`` lines."""
    profile = Profile()
    for line in lines:
        stack, _, count_text = line.strip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        profile.total += count
        profile.threads[_thread(thread)] += count
        if not frames:
            continue
        profile.self_time[_function(frames[-1])] += count
        profile.thread_self.setdefault(_thread(thread), Counter())[_function(frames[-1])] += count
        profile.packages[_package(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            profile.inclusive[function] += count
    return profile


def render(profile: Profile, *, top: int = TOP) -> str:
    """A plain-text summary in percentages of all samples."""
    if profile.total == 0:
        return "no samples"

    def section(title: str, counts: Counter[str], limit: int) -> list[str]:
        rows = [f"{title}:"]
        rows += [
            f"  {100.0 * n / profile.total:5.1f}%  {name}" for name, n in counts.most_common(limit)
        ]
        return rows

    lines = [f"{profile.total} on-CPU samples, all threads"]
    lines += section("by thread", profile.threads, top)
    lines += section("self time by package of the innermost Python frame", profile.packages, top)
    lines += section("self time by function", profile.self_time, top)
    lines += section("inclusive time by function", profile.inclusive, top)
    for thread, _ in profile.threads.most_common():
        lines += section(f"self time in thread {thread}", profile.thread_self[thread], 8)
    return "\n".join(lines)


def find_py_spy() -> str | None:
    """``py-spy`` on PATH or next to this Python (a venv's ``bin``)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


Measure = Callable[..., Measurement]


def profile_scenario(
    spec: RequestSpec, *, pid: int, loader: Measure, args: argparse.Namespace
) -> None:
    """Load the signer with ``spec`` while py-spy samples it; write and print the summary."""
    executable = find_py_spy()
    if executable is None:
        print("profile: py-spy not found; skipped (pip install py-spy)", file=sys.stderr)
        return
    args.output_dir.mkdir(parents=True, exist_ok=True)
    raw = args.output_dir / f"profile-{args.profile}-raw.txt"
    argv = [executable, "record", "--pid", str(pid), "--duration", str(args.duration)]
    argv += ["--rate", "100", "--format", "raw", "--threads", "--nonblocking", "-o", str(raw)]
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Load a little longer than py-spy samples, so every sample is of a loaded server.
    measurement = loader(spec, connections=args.connections, duration_s=args.duration + 1)
    output, _ = spy.communicate(timeout=args.duration + 60)
    if spy.returncode != 0 or not raw.exists():
        print(f"profile: py-spy failed: {output.decode(errors='replace')[-500:]}", file=sys.stderr)
        return
    summary = render(parse(raw.read_text(encoding="utf-8").splitlines()))
    header = (
        f"profile of signer serve under {spec.method} {spec.url} ({measurement.rps:,.0f} req/s)"
    )
    text = f"{header}\n{summary}\n"
    (args.output_dir / f"profile-{args.profile}.txt").write_text(text, encoding="utf-8")
    print(text, file=sys.stderr)
