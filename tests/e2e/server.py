"""Run ``signer`` as a real process: ``signer init`` a directory, ``signer serve`` it."""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 60.0

# Every server a test started; whatever a failing test left running is killed at exit.
_STARTED: list[subprocess.Popen[bytes]] = []


def _kill_leftovers() -> None:
    for process in _STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()


atexit.register(_kill_leftovers)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``signer`` CLI in a child process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "signer.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        env=child_env(),
        timeout=120,
    )


def child_env() -> dict[str, str]:
    """The environment for a child signer: its own config picks its SoftHSM token."""
    env = dict(os.environ)
    env.pop("SOFTHSM2_CONF", None)
    return env


@dataclass(frozen=True)
class Response:
    """Status, headers and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Setup:
    """A directory made by ``signer init``."""

    directory: Path
    port: int
    tokens: dict[str, str]
    scheme: str = "http"
    config_name: str = "signer.toml"  # replicas share a directory (and token) with two configs

    @property
    def config(self) -> Path:
        return self.directory / self.config_name

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @classmethod
    def create(cls, directory: Path, extra_config: str = "", *, scheme: str = "http") -> Setup:
        """``signer init`` into ``directory`` on a free port, then append ``extra_config``."""
        port = free_port()
        run_cli("init", "--dir", str(directory), "--port", str(port))
        if extra_config:
            with (directory / "signer.toml").open("a", encoding="utf-8") as handle:
                handle.write(extra_config)
        credentials = json.loads((directory / "credentials.json").read_text())
        return cls(directory=directory, port=port, tokens=credentials["tokens"], scheme=scheme)


@dataclass
class SignerProcess:
    """A running ``signer serve``; stop it with ``stop()`` or ``kill()``."""

    setup: Setup
    process: subprocess.Popen[bytes]
    log_path: Path
    ssl_context: ssl.SSLContext | None = None
    _stopped: bool = field(default=False)

    @classmethod
    def start(cls, setup: Setup, *, cafile: Path | None = None) -> SignerProcess:
        """Start the server and wait until ``/readyz`` answers 200."""
        log_path = setup.directory / f"serve-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "signer.cli", "serve", "--config", str(setup.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
            )
        _STARTED.append(process)
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        server = cls(setup=setup, process=process, log_path=log_path, ssl_context=context)
        server.wait_ready()
        return server

    def wait_ready(self) -> None:
        """Poll ``/readyz`` until it is 200; fail with the server's log if it dies or hangs."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"signer exited {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(  # noqa: S310 -- loopback URL
                    self.setup.url + "/readyz", timeout=2, context=self.ssl_context
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"signer not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str) -> Any:
        """GET a public JSON resource."""
        with urllib.request.urlopen(self.setup.url + path, timeout=10) as response:  # noqa: S310 -- loopback URL
            return json.loads(response.read())

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one request; JSON-encode ``body`` unless ``raw`` bytes are given."""
        all_headers = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(  # noqa: S310 -- loopback URL
            self.setup.url + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
                return Response(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, dict(exc.headers), exc.read())

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if not self._stopped:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._stopped = True
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if not self._stopped:
            self.process.kill()
            self.process.wait()
            self._stopped = True
