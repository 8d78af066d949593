"""``[server] workers = 2``: two processes serve one port, one leads the lifecycle."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import aiohttp
import jwt
from prometheus_client.parser import text_string_to_metric_families

from signer.metrics import PUBLISH_INTERVAL_S
from tests.e2e.server import Setup, SignerProcess, run_cli
from tests.e2e.test_rotation_soak import RING, SOAK_TOKEN, soak_config


async def test_two_workers_serve_rotate_once_and_every_token_verifies(tmp_path: Path) -> None:
    limited = hashlib.sha256(LIMITED_TOKEN.encode()).hexdigest()
    config = soak_config() + LIMITED_PRINCIPAL.format(digest=limited, ring=RING)
    setup = Setup.create(tmp_path / "workers", config)
    text = setup.config.read_text().replace("[server]\n", "[server]\nworkers = 2\n", 1)
    setup.config.write_text(text)
    server = SignerProcess.start(setup)
    try:
        tokens: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        kids: list[str] = []
        while time.monotonic() < deadline and (
            len(set(kids)) < 3 or len(refusing_pids(server)) < 2
        ):
            status, answer = await sign_once(setup.url, SOAK_TOKEN)
            assert status == 200, answer
            tokens.append(answer)
            kids.append(str(answer["kid"]))
            # An unauthenticated call too: its refusal is logged with the worker's pid.
            assert (await sign_once(setup.url, None))[0] == 401
            await asyncio.sleep(0.05)
        assert len(set(kids)) >= 3, "expected at least two rotations"

        client = jwt.PyJWKClient(f"{setup.url}/v1/rings/{RING}/jwks.json")
        for token in tokens[-20:]:
            key = client.get_signing_key_from_jwt(str(token["jwt"]))
            jwt.decode(str(token["jwt"]), key.key, algorithms=["ES256"])

        assert len(refusing_pids(server)) == 2, "both workers served requests"
        # One node, one budget: the limit holds over requests spread across both workers.
        statuses = [(await sign_once(setup.url, LIMITED_TOKEN))[0] for _ in range(LIMIT + 4)]
        assert statuses.count(200) == LIMIT
        assert statuses.count(429) == 4
        await asyncio.sleep(PUBLISH_INTERVAL_S + 0.5)  # every worker has published since
        signed = len(tokens) + LIMIT
        assert await signed_counts(setup.url) == [signed] * 6, "any worker reports all"
    finally:
        server.stop()
    # The store, read after the stop, is the authority (a follower's view may lag by 0.5 s).
    keys = [
        row
        for row in json.loads(
            run_cli("keys", "list", "--config", str(setup.config), "--json").stdout
        )
        if row["ring"] == RING
    ]
    states = [row["state"] for row in keys]
    assert states.count("active") == 1
    assert states.count("pending") == 1  # one leader: never two standbys
    assert "orphan" not in states
    records = [
        json.loads(line)
        for line in run_cli("audit", "export", "--config", str(setup.config)).stdout.splitlines()
    ]
    generated = [
        r for r in records if r["action"] == "key.generate" and r["details"]["ring"] == RING
    ]
    assert len(generated) == len(keys)  # no key generated twice


LIMIT = 6
LIMITED_TOKEN = "sgn_limited-principal-token"
LIMITED_PRINCIPAL = f"""
[[principals]]
name = "limited"
token_sha256 = "{{digest}}"
permissions = ["jwt:sign:{{ring}}"]
rate_limit = "{LIMIT}/h"
"""


async def sign_once(url: str, token: str | None) -> tuple[int, dict[str, object]]:
    """One sign request on a fresh connection (so the kernel may give it to either worker):
    its status and JSON answer."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.post(
            f"{url}/v1/rings/{RING}/jwt", json={"claims": {"sub": "w"}}, headers=headers
        ) as response,
    ):
        answer: dict[str, object] = await response.json(content_type=None)
        return response.status, answer


def refusing_pids(server: SignerProcess) -> set[int]:
    """The worker processes that have logged a refused request so far."""
    return {
        int(json.loads(line)["pid"])
        for line in server.log().splitlines()
        if line.startswith("{") and '"refused' in line
    }


async def signed_counts(url: str) -> list[float]:
    """The ring's signed-token count from six scrapes of /metrics, each on a fresh connection
    (so the kernel spreads them over the workers)."""
    counts = []
    for _ in range(6):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.get(f"{url}/metrics") as response,
        ):
            text = await response.text()
        counts.append(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "signer_jwt_sign_duration_seconds_count"
                and sample.labels.get("ring") == RING
            )
        )
    return counts
