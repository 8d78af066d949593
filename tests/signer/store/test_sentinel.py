"""``redis+sentinel://``: a real Sentinel, a master and its replica, and a failover."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jwks.records import KeyState
from jwks.thumbprint import KeyId
from signer.errors import StoreUnavailable
from signer.store.redis import RedisStore
from tests.redis_server import RedisServer, answers_ping, free_port, start_redis_server
from tests.signer.store.test_conformance import record

SERVICE = "signer-master"
FAILOVER_WAIT_S = 30.0


@dataclass
class Sentinel:
    """One ``redis-server --sentinel`` watching a master; quorum 1, quick to act."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{SERVICE}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_sentinel(directory: Path, master_port: int) -> Sentinel:
    port = free_port()
    config = directory / "sentinel.conf"
    config.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {directory}\n"
        f"logfile {directory / 'sentinel.log'}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 500\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    command = [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not answers_ping(port):
        assert process.poll() is None, "sentinel exited"
        assert time.monotonic() < deadline, "sentinel did not answer"
        time.sleep(0.02)
    return Sentinel(port, process)


@dataclass
class Group:
    master: RedisServer
    replica: RedisServer
    sentinel: Sentinel


@pytest.fixture
def group() -> Iterator[Group]:
    master = start_redis_server()
    replica_dir = Path(tempfile.mkdtemp(prefix="signer-redis-replica-"))
    replica = RedisServer(
        replica_dir,
        owns_directory=True,
        extra_args=("--replicaof", "127.0.0.1", str(master.port)),
    ).start()
    sentinel_dir = Path(tempfile.mkdtemp(prefix="signer-sentinel-"))
    sentinel = start_sentinel(sentinel_dir, master.port)
    try:
        yield Group(master, replica, sentinel)
    finally:
        sentinel.stop()
        replica.stop()
        master.stop()
        shutil.rmtree(sentinel_dir, ignore_errors=True)


async def test_a_sentinel_url_follows_the_master_across_a_failover(group: Group) -> None:
    store = RedisStore.from_url(group.sentinel.url, prefix="sentinel:")
    try:
        await store.insert_key(record("k1", KeyState.PENDING, ring="blue"))
        assert (await store.get_key(KeyId("k1"))) is not None
        await wait_replicated(group.replica)

        group.master.stop()  # the master dies; the Sentinel promotes the replica

        deadline = time.monotonic() + FAILOVER_WAIT_S
        while True:
            try:
                found = await store.get_key(KeyId("k1"))
                await store.insert_key(record("k2", KeyState.PENDING, ring="green"))
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store never found the new master"
                await asyncio.sleep(0.25)
        assert found is not None
        assert found.ring == "blue"  # written before the failover, read from the new master
        assert [k.kid for k in await store.keys()] == ["k1", "k2"]
    finally:
        await store.aclose()


async def wait_replicated(replica: RedisServer) -> None:
    """Until the replica holds what the master acknowledged (WAIT would do it per write)."""
    reader = RedisStore.from_url(replica.url, prefix="sentinel:")
    try:
        for _ in range(100):
            if await reader.get_key(KeyId("k1")) is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the replica never caught up")
    finally:
        await reader.aclose()
