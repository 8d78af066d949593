"""Which load generator drives the HTTP scenarios: ``wrk`` if installed, else the aiohttp client.

Every HTTP scenario of one run uses the same loader, so the ratios compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.benchlib import loadgen, wrk
from scripts.benchlib.loadgen import RequestSpec
from scripts.benchlib.stats import Measurement


@dataclass(frozen=True, slots=True, kw_only=True)
class Loader:
    """The load generator for every HTTP scenario of a run."""

    wrk_path: str | None  # None: the built-in aiohttp client
    wrk_threads: int
    workdir: Path

    def describe(self) -> str:
        """What the results record as the loader."""
        if self.wrk_path is None:
            return "aiohttp client (scripts.benchlib.loadgen, closed loop)"
        return f"{wrk.version(self.wrk_path)} (-t{self.wrk_threads})"

    def measure(self, spec: RequestSpec, *, connections: int, duration_s: int) -> Measurement:
        """Drive ``spec`` at ``connections`` concurrency for ``duration_s``."""
        if self.wrk_path is None:
            return loadgen.run(spec, connections=connections, duration_s=duration_s)
        return wrk.run(
            self.wrk_path,
            spec,
            workdir=self.workdir,
            connections=connections,
            duration_s=duration_s,
            threads=self.wrk_threads,
        )


def choose_loader(choice: str, *, threads: int, workdir: Path) -> Loader:
    """``wrk`` when asked for or found (``auto``), else the aiohttp client."""
    path = wrk.find() if choice in ("auto", "wrk") else None
    if choice == "wrk" and path is None:
        raise SystemExit(
            "bench: --loader wrk, but wrk is not installed (Debian: apt-get install wrk)"
        )
    return Loader(wrk_path=path, wrk_threads=threads, workdir=workdir)
