"""The servers under load: ``signer serve`` on a fresh ``signer init`` directory, and the baseline.

Both run as child processes on loopback ports that were free a moment before, so the bench
process (and its load generator) never shares an event loop or a GIL with them. The signer gets
one ring per algorithm and a ``bench`` principal allowed ``jwt:sign:*`` whose token is made here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from scripts.benchlib.baseline import GET_PATH
from signer.eventloop import DEFAULT_EVENT_LOOP, EventLoopKind

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0  # RSA key generation for two rings and their standbys takes a while
IDLE_TIMEOUT_S = 30.0
IDLE_WINDOW_S = 0.25
# Ring name -> alg. ES256 is the ``default`` ring that ``signer init`` writes.
RINGS: dict[str, str] = {
    "default": "ES256",
    "es384": "ES384",
    "rs256": "RS256",
    "ps256": "PS256",
    "eddsa": "EdDSA",
}


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """The environment for a child: the signer's own config picks its SoftHSM token."""
    return {key: value for key, value in os.environ.items() if key != "SOFTHSM2_CONF"}


def extra_config(token: str) -> str:
    """TOML appended to ``signer.toml``: the bench principal and a ring per extra algorithm."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    parts = [
        "",
        "[[principals]]",
        'name = "bench"',
        f'token_sha256 = "{digest}"',
        'permissions = ["jwt:sign:*"]',
    ]
    for name, alg in RINGS.items():
        if name == "default":
            continue
        parts += [
            "",
            "[[rings]]",
            f'name = "{name}"',
            f'alg = "{alg}"',
            'rotation_period = "30d"',
            'prepublish = "2d"',
            'token_max_ttl = "1h"',
        ]
    return "\n".join(parts) + "\n"


def http_get(
    url: str, *, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET on loopback: status, headers and body (error statuses included)."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 -- loopback URL
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@dataclass
class Process:
    """A child server and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str
    _stopped: bool = field(default=False)

    @classmethod
    def start(cls, name: str, argv: list[str], *, log_path: Path, url: str, ready: str) -> Process:
        """Start ``argv`` and wait until GET ``url + ready`` answers 200."""
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=REPO
            )
        server = cls(name=name, process=process, log_path=log_path, url=url)
        server.wait_ready(ready)
        return server

    def wait_ready(self, path: str) -> None:
        """Poll until ``path`` is 200; fail with the log if the process dies or hangs."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            try:
                if http_get(self.url + path)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The child's process id (for a profiler to attach to)."""
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process and its live children (``workers``) have used
        so far (Linux ``/proc``; else None)."""
        own = _cpu_and_parent(self.process.pid)
        if own is None:
            return None
        total = own[0]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.process.pid:
                child = _cpu_and_parent(int(entry.name))
                if child is not None and child[1] == self.process.pid:
                    total += child[0]
        return total

    def wait_idle(self, *, timeout_s: float = IDLE_TIMEOUT_S) -> None:
        """Wait until the process stops using CPU: requests a load tool abandoned are done.

        Idle means at most one clock tick (10 ms on Linux) of CPU in 0.25 s; a server still
        working through a backlog uses far more.
        """
        tick = 1.0 / os.sysconf("SC_CLK_TCK")
        deadline = time.monotonic() + timeout_s
        last = self.cpu_seconds()
        while last is not None and time.monotonic() < deadline:
            time.sleep(IDLE_WINDOW_S)
            now = self.cpu_seconds()
            if now is None or now - last <= tick * 1.5:
                return
            last = now

    def log(self) -> str:
        """The last part of what the process printed."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in 20 s."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _cpu_and_parent(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user + system) and parent pid of ``pid``, from ``/proc/<pid>/stat``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # Fields after the parenthesised command name: ppid is field 4, utime and stime 14 and 15.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class SignerSetup:
    """A ``signer init`` directory with the bench principal and rings appended."""

    directory: Path
    port: int
    token: str

    @property
    def url(self) -> str:
        """Base URL of the signer."""
        return f"http://127.0.0.1:{self.port}"


def init_signer(
    directory: Path, *, workers: int = 1, event_loop: EventLoopKind = DEFAULT_EVENT_LOOP
) -> SignerSetup:
    """``signer init`` into ``directory`` on a free port, then append the bench config, with
    ``[server] event_loop`` (and ``workers`` when more than one)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "signer.cli",
        "init",
        "--dir",
        str(directory),
        "--port",
        str(port),
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=child_env(), cwd=REPO, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"signer init failed ({result.returncode}): {result.stderr.strip()}")
    token = "sgn_bench_" + secrets.token_urlsafe(24)
    config = directory / "signer.toml"
    text = config.read_text(encoding="utf-8") + extra_config(token)
    server = f'[server]\nevent_loop = "{event_loop}"\n'
    if workers > 1:
        server += f"workers = {workers}\n"
    text = text.replace("[server]\n", server, 1)
    config.write_text(text, encoding="utf-8")
    return SignerSetup(directory=directory, port=port, token=token)


def start_signer(setup: SignerSetup) -> Process:
    """``signer serve`` the setup; returns once ``/readyz`` is 200."""
    argv = [
        sys.executable,
        "-m",
        "signer.cli",
        "serve",
        "--config",
        str(setup.directory / "signer.toml"),
    ]
    return Process.start(
        "signer serve", argv, log_path=setup.directory / "serve.log", url=setup.url, ready="/readyz"
    )


def start_baseline(
    workdir: Path, *, jwks_bytes: int, event_loop: EventLoopKind = DEFAULT_EVENT_LOOP
) -> Process:
    """The baseline app (``scripts.benchlib.baseline``) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "scripts.benchlib.baseline"]
    argv += ["--port", str(port), "--jwks-bytes", str(jwks_bytes), "--event-loop", event_loop]
    return Process.start(
        "baseline",
        argv,
        log_path=workdir / "baseline.log",
        url=f"http://127.0.0.1:{port}",
        ready=GET_PATH,
    )


def jwks_of(url: str) -> tuple[bytes, str]:
    """The signer's default JWKS body and its ETag."""
    status, headers, body = http_get(url + "/.well-known/jwks.json")
    if status != 200:
        raise RuntimeError(f"GET /.well-known/jwks.json answered {status}")
    etag = headers.get("ETag") or headers.get("Etag") or ""
    if not etag:
        raise RuntimeError("the JWKS answer has no ETag")
    json.loads(body)  # a JWKS must at least be JSON
    return body, etag
