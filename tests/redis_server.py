"""A real ``redis-server`` for tests (DESIGN.md: no fake Redis), on a free loopback port.

Each server lives in its own temporary directory with append-only persistence fsynced on every
write, as production should run it, so a stop and restart keeps the data (outage tests rely on
this). Every server started is stopped at interpreter exit too, whatever a test did.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 10.0
_running: list[RedisServer] = []


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """One ``redis-server`` process; ``stop``/``start`` again keep its port and data."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    owns_directory: bool = False  # a temporary directory, removed with the server at exit
    extra_args: tuple[str, ...] = ()  # e.g. ("--replicaof", "127.0.0.1", "6379")

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        if self not in _running:
            _running.append(self)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it to exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def start_redis_server(directory: Path | None = None) -> RedisServer:
    """Start a server in ``directory`` (default: a new temporary one, removed at exit)."""
    if directory is not None:
        return RedisServer(directory).start()
    temporary = Path(tempfile.mkdtemp(prefix="signer-redis-"))
    return RedisServer(temporary, owns_directory=True).start()


_shared: RedisServer | None = None


def shared_redis_server() -> RedisServer:
    """The process's one shared server (started on first use); tests keep apart by key prefix."""
    global _shared  # noqa: PLW0603 -- one server per test process, like the session HSM token
    if _shared is None or _shared.process is None:
        _shared = start_redis_server()
    return _shared


@atexit.register
def _stop_all() -> None:
    for server in _running:
        server.stop()
        if server.owns_directory:
            shutil.rmtree(server.directory, ignore_errors=True)
