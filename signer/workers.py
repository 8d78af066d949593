"""``[server] workers = N``: N serving processes on one port, under one supervisor.

Each worker is a fresh ``signer serve`` process (so PKCS#11 is initialised after the process
starts, never inherited across a fork) that binds the port with ``SO_REUSEPORT``; the kernel
spreads connections across them. Each has its own PKCS#11 thread and store connection; one of them
at a time holds the lifecycle lease and rotates, the others follow the store. They share their
metrics and rate limits through a directory the supervisor makes (``Metrics.share``,
``signer.ratelimit.SharedBuckets``). If a worker exits, the supervisor stops the others and exits
with its code, so a process manager restarts the whole set in a known state.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

log = logging.getLogger("signer.workers")

STOP_TIMEOUT_S = 20.0


def supervise(args: argparse.Namespace, count: int) -> int:
    """Run ``count`` workers until one exits or a signal asks them all to stop."""
    command = [
        sys.executable,
        "-m",
        "signer.cli",
        "--log-level",
        args.log_level,
        "--log-format",
        args.log_format,
        "serve",
        "--config",
        args.config,
    ]
    # Where the workers share their metrics (so any of them answers /metrics for all) and
    # their rate-limit buckets (so a limit is the node's, not each worker's).
    shared_dir = tempfile.mkdtemp(prefix="signer-workers-")  # mode 0700
    command += ["--shared-dir", shared_dir]
    try:
        return _run(command, count)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)


def _run(command: list[str], count: int) -> int:
    """Start ``count`` workers of ``command``; stop them all when one exits or on a signal."""
    workers = [subprocess.Popen([*command, "--worker", str(i)]) for i in range(count)]  # noqa: S603 -- our own entry point
    log.info("started %d workers", count, extra={"pids": [w.pid for w in workers]})
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while all(w.poll() is None for w in workers):
        time.sleep(0.2)
    exited = next(w for w in workers if w.poll() is not None)
    if not stopping:
        code = exited.returncode or 1
        log.error("worker %d exited with %s; stopping the others", exited.pid, exited.returncode)
        stop(signal.SIGTERM, None)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return code
