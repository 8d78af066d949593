"""No blocking calls on the event loop: asyncio's debug mode flags every slow callback.

The app runs in-process on the real SoftHSM token and a real SQLite file; every PKCS#11 and
SQLite call must go through their worker threads, never run on the loop. Debug mode itself makes
every task slower (it records where each was created), so the bar is 100 ms; only the server's
callbacks count (the test's own client tasks are not the signer's), and the garbage collector is
paused while measuring so that a collection left over from earlier tests is not blamed.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from signer.app import create_app
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.settings import load_settings
from tests.hsm_token import new_key_id

TOKEN = "sgn_loop-test"
SLOW = 0.1
# A slow callback is the server's when it runs aiohttp's request handling or the signer's code.
SERVER_SIDE = re.compile(r"web_protocol|RequestHandler|(?<!tests)/signer/\w+")

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


async def test_signing_under_load_never_blocks_the_loop(
    tmp_path: Path,
    backend: Pkcs11Backend,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring = "loop" + new_key_id()[:8]
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "unused"
pin_env = "PIN"

[store]
url = "sqlite://state.db"

[[rings]]
name = "{ring}"
alg = "ES256"
rotation_period = "30d"
prepublish = "2d"
token_max_ttl = "1h"

[[principals]]
name = "idp"
token_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
permissions = ["jwt:sign:{ring}"]
"""
    )
    settings = load_settings(config, environ={"PIN": "x"})
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW
    client = await aiohttp_client(create_app(settings, backend=backend))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    gc.collect()
    gc.disable()
    try:
        statuses, batch = await load(client, ring, headers, caplog)
    finally:
        gc.enable()
    assert set(statuses) == {200}
    assert batch == 200
    slow = [
        r.getMessage()
        for r in caplog.records
        if "took" in r.getMessage() and SERVER_SIDE.search(r.getMessage())
    ]
    assert slow == []


async def load(
    client: TestClient[Any, Any],
    ring: str,
    headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> tuple[list[int], int]:
    """Sign 200 tokens and a batch of 100 while fetching the JWKS 50 times, all at once."""
    with caplog.at_level(logging.WARNING, logger="asyncio"):

        async def sign(i: int) -> int:
            response = await client.post(
                f"/v1/rings/{ring}/jwt", json={"claims": {"sub": str(i)}}, headers=headers
            )
            return response.status

        async def jwks() -> int:
            return (await client.get(f"/v1/rings/{ring}/jwks.json")).status

        statuses = await asyncio.gather(
            *(sign(i) for i in range(200)), *(jwks() for _ in range(50))
        )
        batch = await client.post(
            f"/v1/rings/{ring}/jwt:batch",
            json={"requests": [{"claims": {}}] * 100},
            headers=headers,
        )
    return list(statuses), batch.status
