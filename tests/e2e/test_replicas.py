"""Replicas on Redis: two ``signer serve`` processes, one Redis, one SoftHSM token directory.

They must serve byte-identical JWKS documents, verify each other's tokens, rotate with one leader,
survive the leader's SIGKILL mid-rotation, and ride out a Redis restart without a token that has
no audit record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jwt
import pytest

from tests.e2e.server import Setup, SignerProcess, free_port, run_cli
from tests.e2e.test_rotation_soak import (
    MAX_AGE,
    PREPUBLISH,
    RING,
    ROTATION,
    SOAK_TOKEN,
    soak_config,
)
from tests.e2e.verifiers import PyJwtVerifier
from tests.redis_server import RedisServer, start_redis_server

LEASE_TTL_S = 10.0  # signer.leadership: a new leader takes over at most this long after a crash
AUTH = {"Authorization": f"Bearer {SOAK_TOKEN}"}


@dataclass
class Replicas:
    """Two configs in one ``signer init`` directory: same token, same Redis, other ports."""

    redis: RedisServer
    first: Setup
    second: Setup
    servers: list[SignerProcess]

    def start(self, setup: Setup) -> SignerProcess:
        server = SignerProcess.start(setup)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def _replica_configs(tmp_path: Path, redis: RedisServer) -> tuple[Setup, Setup]:
    first = Setup.create(tmp_path / "replicas", soak_config())
    text = re.sub(
        r'(?m)^url = "sqlite:[^"]*"$',
        f'url = "{redis.url}"\nprefix = "e2e:"',
        first.config.read_text(),
    )
    first.config.write_text(text)
    second = dataclasses.replace(first, port=free_port(), config_name="signer-second.toml")
    second.config.write_text(text.replace(f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"))
    return first, second


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    redis = start_redis_server()
    first, second = _replica_configs(tmp_path, redis)
    group = Replicas(redis=redis, first=first, second=second, servers=[])
    try:
        yield group
    finally:
        group.stop_all()
        redis.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def _jwks(http: aiohttp.ClientSession, setup: Setup) -> tuple[bytes, str]:
    async with http.get(f"{setup.url}/v1/rings/{RING}/jwks.json") as response:
        assert response.status == 200
        return await response.read(), response.headers["ETag"]


async def _sign(http: aiohttp.ClientSession, setup: Setup) -> tuple[int, dict[str, object]]:
    async with http.post(
        f"{setup.url}/v1/rings/{RING}/jwt", json={"claims": {"sub": "replica"}}, headers=AUTH
    ) as response:
        return response.status, await response.json()


def _keys(setup: Setup) -> list[dict[str, object]]:
    rows = json.loads(run_cli("keys", "list", "--config", str(setup.config), "--json").stdout)
    return [row for row in rows if row["ring"] == RING]


def _audit(setup: Setup) -> list[dict[str, object]]:
    out = run_cli("audit", "export", "--config", str(setup.config)).stdout
    return [json.loads(line) for line in out.splitlines()]


async def _same_jwks_within(
    http: aiohttp.ClientSession, setups: list[Setup], seconds: float
) -> tuple[bytes, str]:
    """Poll until every replica serves the same bytes and ETag; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        answers = [await _jwks(http, setup) for setup in setups]
        if all(answer == answers[0] for answer in answers):
            return answers[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"replicas disagree on the JWKS after {seconds}s: {answers}")
        await asyncio.sleep(0.05)


async def test_replicas_serve_identical_jwks_and_verify_each_others_tokens(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    replicas.start(replicas.first)
    replicas.start(replicas.second)

    body, etag = await _same_jwks_within(http, [replicas.first, replicas.second], 1.0)
    assert json.loads(body)["keys"]

    for signer_setup, verifier_setup in [
        (replicas.first, replicas.second),
        (replicas.second, replicas.first),
    ]:
        status, token = await _sign(http, signer_setup)
        assert status == 200, token
        client = jwt.PyJWKClient(f"{verifier_setup.url}/v1/rings/{RING}/jwks.json")
        key = client.get_signing_key_from_jwt(str(token["jwt"]))
        assert jwt.decode(str(token["jwt"]), key.key, algorithms=["ES256"])["sub"] == "replica"

    # A rotation asked of one replica shows on the other within a second, byte for byte.
    async with http.post(f"{replicas.second.url}/v1/rings/{RING}/rotate", headers=AUTH) as answer:
        assert answer.status < 300, await answer.text()
    deadline = time.monotonic() + ROTATION + PREPUBLISH + 5
    while (await _jwks(http, replicas.first))[1] == etag:
        assert time.monotonic() < deadline, "the rotation never reached the JWKS"
        await asyncio.sleep(0.05)
    await _same_jwks_within(http, [replicas.first, replicas.second], 1.0)


async def test_rotation_soak_across_two_replicas_has_no_verification_failure(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    replicas.start(replicas.first)
    replicas.start(replicas.second)
    setups = [replicas.first, replicas.second]
    # Relying parties of both replicas, caching for jwks_max_age as the signer tells them.
    verifiers = [PyJwtVerifier(f"{s.url}/v1/rings/{RING}/jwks.json", MAX_AGE) for s in setups]
    failures: list[str] = []
    kids: set[str] = set()
    pending: list[tuple[float, str, str]] = []  # (verify again at, wall time; jwt, kid)
    deadline = time.monotonic() + 3 * ROTATION + PREPUBLISH + 4
    turn = 0
    while time.monotonic() < deadline and len(kids) < 3:
        status, token = await _sign(http, setups[turn % 2])
        assert status == 200, token
        kids.add(str(token["kid"]))
        for verifier in verifiers:  # at once, against both replicas' JWKS
            error = await verifier.verify(str(token["jwt"]))
            if error is not None:
                failures.append(f"fresh kid={token['kid']}: {error}")
        # Checked again shortly before its exp (whole seconds, so up to 1 s before iat + TTL).
        pending.append((float(str(token["exp"])) - 0.7, str(token["jwt"]), str(token["kid"])))
        now = time.time()
        for _due, token_jwt, kid in [p for p in pending if p[0] <= now]:
            for verifier in verifiers:  # again just before it expires
                error = await verifier.verify(token_jwt)
                if error is not None:
                    failures.append(f"late kid={kid}: {error}")
        pending = [p for p in pending if p[0] > now]
        turn += 1
        await asyncio.sleep(0.05)

    assert len(kids) >= 3, "expected at least two rotations across the replicas"
    assert failures == []
    states = [row["state"] for row in _keys(replicas.first)]
    assert states.count("active") == 1
    assert states.count("pending") <= 1  # one leader: never two standbys


async def test_killed_leader_mid_rotation_is_replaced_within_the_lease(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    first = replicas.start(replicas.first)  # started first: it takes the lease
    replicas.start(replicas.second)
    kids_before = {row["kid"] for row in _keys(replicas.first)}

    async with http.post(f"{replicas.first.url}/v1/rings/{RING}/rotate", headers=AUTH) as answer:
        assert answer.status < 300, await answer.text()
    first.kill()

    # The survivor takes the lease and carries the ring on: a new key activates and a new
    # standby is generated, within the lease TTL plus one rotation's pre-publication.
    deadline = time.monotonic() + LEASE_TTL_S + ROTATION + PREPUBLISH + 5
    while time.monotonic() < deadline:
        rows = _keys(replicas.second)
        new = {str(row["kid"]) for row in rows} - kids_before
        active = [row for row in rows if row["state"] == "active"]
        if len(new) >= 2 and active and active[0]["kid"] in new:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"the rotation did not complete after the leader died: {rows}")

    status, token = await _sign(http, replicas.second)
    assert status == 200, token
    keys = _keys(replicas.second)  # read before the audit log: the ring keeps rotating
    states = [row["state"] for row in keys]
    assert states.count("active") == 1
    assert states.count("pending") <= 1
    generated = [
        str(r["details"]["kid"])  # type: ignore[index]
        for r in _audit(replicas.second)
        if r["action"] == "key.generate" and r["details"]["ring"] == RING  # type: ignore[index]
    ]
    assert len(generated) == len(set(generated)), "a key was generated twice"
    assert {str(row["kid"]) for row in keys} <= set(generated), "a key has no generate record"


async def test_redis_restart_under_load_loses_no_audit_record_and_recovers(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    replicas.start(replicas.first)
    replicas.start(replicas.second)
    setups = [replicas.first, replicas.second]
    returned: list[str] = []
    refused: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load(setup: Setup) -> None:
        while not stop.is_set():
            try:
                status, body = await _sign(http, setup)
            except aiohttp.ClientError as exc:  # a connection reset is a refusal too
                refused.append((0, type(exc).__name__))
                continue
            if status == 200:
                returned.append(str(body["jwt"]))
            else:
                refused.append((status, str(body.get("code"))))
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(load(setup)) for setup in setups for _ in range(3)]
    await asyncio.sleep(1.0)
    replicas.redis.stop()
    await asyncio.sleep(0.5)
    # Redis down: readiness fails, signing fails closed, the JWKS is still served from memory.
    for setup in setups:
        async with http.get(f"{setup.url}/readyz") as ready:
            assert ready.status == 503
        async with http.get(f"{setup.url}/v1/rings/{RING}/jwks.json") as jwks:
            assert jwks.status == 200
    await asyncio.sleep(1.5)
    replicas.redis.start()
    restarted = time.monotonic()
    recovered: dict[str, float] = {}
    while len(recovered) < 2 and time.monotonic() - restarted < 15:
        for setup in setups:
            if setup.url not in recovered:
                status, _ = await _sign(http, setup)
                if status == 200:
                    recovered[setup.url] = time.monotonic() - restarted
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*workers)

    assert len(recovered) == 2, f"a replica did not recover: {recovered}"
    assert max(recovered.values()) < 10, recovered  # back within seconds, without a restart
    assert refused, "signing went on while Redis was down"
    # Every refusal failed closed: 503 store_unavailable (or a connection cut while it stopped).
    assert all(
        (status, code) == (503, "store_unavailable") or status == 0 for status, code in refused
    ), refused[:5]
    assert returned, "no token was signed"
    # Every token that was returned has its jwt.sign record (matched by jti hash).
    audited = {
        r["details"]["jti_sha256"]  # type: ignore[index]
        for r in _audit(replicas.first)
        if r["action"] == "jwt.sign"
    }
    for token in returned:
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        assert _sha256(jti) in audited, f"token {jti} left without its audit record"
    states = [row["state"] for row in _keys(replicas.first)]
    assert states.count("active") == 1
    assert (
        "chain correctly"
        in run_cli("audit", "verify", "--config", str(replicas.first.config)).stdout
    )


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
