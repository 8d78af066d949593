"""Whole-process behaviour: restarts keep keys, init refuses to overwrite, load never crashes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import jwt

from tests.e2e.conftest import MULTI_TOKEN
from tests.e2e.server import Setup, SignerProcess, run_cli

CONCURRENT_REQUESTS = 400


def issue(server: SignerProcess) -> dict[str, Any]:
    """One token for ``sub`` "a" from the default ring, as the issuer."""
    answer: dict[str, Any] = server.request(
        "POST",
        "/v1/rings/default/jwt",
        body={"claims": {"sub": "a"}},
        token=server.setup.tokens["issuer"],
    ).json()
    return answer


def test_restart_on_the_same_directory_keeps_the_same_keys(fresh_setup: Setup) -> None:
    first = SignerProcess.start(fresh_setup)
    try:
        jwks_before = first.request("GET", "/.well-known/jwks.json")
        issued = issue(first)
    finally:
        assert first.stop() == 0
    second = SignerProcess.start(fresh_setup)
    try:
        jwks_after = second.request("GET", "/.well-known/jwks.json")
        assert jwks_after.body == jwks_before.body
        assert jwks_after.headers["ETag"] == jwks_before.headers["ETag"]
        # A token from before the restart still verifies against the JWKS after it.
        key = jwt.PyJWKClient(f"{fresh_setup.url}/.well-known/jwks.json").get_signing_key(
            issued["kid"]
        )
        assert jwt.decode(issued["jwt"], key.key, algorithms=["ES256"])["sub"] == "a"
    finally:
        second.stop()
    listed = [
        row
        for row in json.loads(
            run_cli("keys", "list", "--config", str(fresh_setup.config), "--json").stdout
        )
        if row["ring"] == "default"
    ]
    assert [(k["kid"], k["state"]) for k in listed[:1]] == [(issued["kid"], "active")]
    assert [k["state"] for k in listed] == ["active", "pending"]


def test_restart_after_sigkill_keeps_the_same_keys(fresh_setup: Setup) -> None:
    first = SignerProcess.start(fresh_setup)
    jwks_before = first.request("GET", "/.well-known/jwks.json").body
    first.kill()
    second = SignerProcess.start(fresh_setup)
    try:
        assert second.request("GET", "/.well-known/jwks.json").body == jwks_before
    finally:
        second.stop()


def test_serve_runs_on_uvloop_by_default(signer: SignerProcess) -> None:
    assert "(event loop: uvloop)" in signer.log()


def test_serve_warns_of_a_ring_that_signs_blobs_and_statements(signer: SignerProcess) -> None:
    """The dev profile takes every kind on one ring, as the default allows; serve says why not."""
    assert "ring codesign signs blobs, and with the same key DSSE statements" in signer.log()


def test_serve_on_the_asyncio_loop_signs_when_configured(fresh_setup: Setup) -> None:
    """``[server] event_loop = "asyncio"`` is the way back from uvloop, and it serves."""
    text = fresh_setup.config.read_text(encoding="utf-8")
    fresh_setup.config.write_text(
        text.replace("[server]\n", '[server]\nevent_loop = "asyncio"\n', 1), encoding="utf-8"
    )
    server = SignerProcess.start(fresh_setup)
    try:
        issued = issue(server)
        assert issued["alg"] == "ES256"
        assert "(event loop: asyncio)" in server.log()
    finally:
        assert server.stop() == 0


def test_init_refuses_an_existing_setup(fresh_setup: Setup) -> None:
    before = fresh_setup.config.read_bytes()
    result = run_cli("init", "--dir", str(fresh_setup.directory), check=False)
    assert result.returncode != 0
    assert "refusing to overwrite keys" in result.stderr
    assert fresh_setup.config.read_bytes() == before


def test_init_writes_secrets_with_mode_0600(fresh_setup: Setup) -> None:
    for name in ("hsm-pin", "hsm-so-pin", "credentials.json"):
        assert (fresh_setup.directory / name).stat().st_mode & 0o777 == 0o600
    credentials = json.loads((fresh_setup.directory / "credentials.json").read_text())
    assert credentials["url"] == fresh_setup.url
    assert set(credentials["tokens"]) == {
        "issuer",
        "admin",
        "ci",
        "approver1",
        "approver2",
        "auditor",
    }
    # Only digests of the tokens are in the config.
    config = fresh_setup.config.read_text()
    assert all(token not in config for token in credentials["tokens"].values())


def test_keys_list_prints_the_hsm_attribute_proof(signer: SignerProcess) -> None:
    result = run_cli("keys", "list", "--config", str(signer.setup.config), "--json")
    rows = json.loads(result.stdout)
    # Every ring's keys, and the key that signs audit checkpoints.
    assert {row["ring"] for row in rows} == {
        "default",
        "codesign",  # signer init's code-signing ring
        "es384",
        "rs256",
        "ps256",
        "eddsa",
        "_audit",
    }
    assert sorted(row["state"] for row in rows) == ["active"] * 7 + ["pending"] * 6
    for row in rows:
        assert row["proof"] == "ok"
        assert row["attributes"] == {
            "LOCAL": True,
            "ALWAYS_SENSITIVE": True,
            "NEVER_EXTRACTABLE": True,
            "SENSITIVE": True,
            "EXTRACTABLE": False,
            "VALUE_READABLE": False,
        }
    table = run_cli("keys", "list", "--config", str(signer.setup.config)).stdout
    assert "RING" in table.splitlines()[0]
    # The PROOF column ends each row (a kid may itself start with "ok").
    assert sum(line.endswith(" ok") for line in table.splitlines()) == len(rows)


async def test_hundreds_of_concurrent_signings_never_crash_the_process(
    signer: SignerProcess,
) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sign(i: int) -> tuple[int, str]:
            ring = ["default", "es384", "eddsa"][i % 3]
            async with session.post(
                f"{signer.setup.url}/v1/rings/{ring}/jwt",
                json={"claims": {"sub": f"user-{i}"}},
                headers={"Authorization": f"Bearer {MULTI_TOKEN}"},
            ) as response:
                body = await response.json()
                return response.status, body.get("jwt", "")

        results = await asyncio.gather(*(sign(i) for i in range(CONCURRENT_REQUESTS)))
    assert [status for status, _ in results] == [200] * CONCURRENT_REQUESTS
    jtis = {jwt.decode(token, options={"verify_signature": False})["jti"] for _, token in results}
    assert len(jtis) == CONCURRENT_REQUESTS
    assert signer.process.poll() is None
    assert signer.get_json("/readyz")["status"] == "ready"
