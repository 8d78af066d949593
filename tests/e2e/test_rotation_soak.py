"""Rotation soak on a live signer with a ring that rotates every few seconds.

Relying parties (PyJWT's ``PyJWKClient`` and node's ``jose``) cache the JWKS for
``jwks_max_age`` and verify each token at once and again just before it expires: across several
rotations none may fail. The short form runs in CI; ``SIGNER_SOAK_ROTATIONS`` makes it longer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.server import Setup, SignerProcess, run_cli
from tests.e2e.verifiers import JoseVerifier, PyJwtVerifier

ROTATION, PREPUBLISH, MAX_AGE, TTL, SKEW, RETAIN = 4, 2, 2, 3, 1, 3
ROTATIONS = int(os.environ.get("SIGNER_SOAK_ROTATIONS", "3"))
SOAK_TOKEN = "sgn_soak-principal-token"
RING = "soak"


def soak_config() -> str:
    digest = hashlib.sha256(SOAK_TOKEN.encode()).hexdigest()
    return f"""
[[principals]]
name = "soaker"
token_sha256 = "{digest}"
permissions = ["jwt:sign:{RING}", "keys:admin:{RING}"]

[[rings]]
name = "{RING}"
alg = "ES256"
rotation_period = {ROTATION}
prepublish = {PREPUBLISH}
jwks_max_age = {MAX_AGE}
token_max_ttl = {TTL}
clock_skew = {SKEW}
retain = {RETAIN}
"""


@pytest.fixture
def soak_signer(tmp_path: Path) -> Iterator[SignerProcess]:
    server = SignerProcess.start(Setup.create(tmp_path / "soak", soak_config()))
    yield server
    server.stop()


@dataclass
class Issued:
    kid: str
    exp: int
    jwt: str
    started: float
    returned: float


@dataclass
class Soak:
    """Issues tokens continuously and watches the JWKS."""

    server: SignerProcess
    session: aiohttp.ClientSession
    issued: list[Issued] = field(default_factory=list)
    present: dict[str, tuple[float, float]] = field(default_factory=dict)  # kid: first, last
    gone_at: dict[str, float] = field(default_factory=dict)

    @property
    def jwks_url(self) -> str:
        return f"{self.server.setup.url}/v1/rings/{RING}/jwks.json"

    async def issue(self) -> Issued:
        started = time.time()
        async with self.session.post(
            f"{self.server.setup.url}/v1/rings/{RING}/jwt",
            json={"claims": {"sub": "soak"}, "ttl": TTL},
            headers={"Authorization": f"Bearer {SOAK_TOKEN}"},
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        issued = Issued(body["kid"], body["exp"], body["jwt"], started, time.time())
        self.issued.append(issued)
        return issued

    async def watch_jwks(self, stop: asyncio.Event) -> None:
        """Poll the JWKS (no cache) and note when each kid appears and disappears."""
        while not stop.is_set():
            async with self.session.get(self.jwks_url) as response:
                kids = {k["kid"] for k in (await response.json())["keys"]}
            now = time.time()
            for kid in kids:
                first = self.present.get(kid, (now, now))[0]
                self.present[kid] = (first, now)
            for kid in set(self.present) - kids:
                self.gone_at.setdefault(kid, now)
            await asyncio.sleep(0.1)

    def kids(self) -> list[str]:
        return list(dict.fromkeys(i.kid for i in self.issued))

    async def admin(self, method: str, path: str, body: object = None) -> dict[str, object]:
        async with self.session.request(
            method,
            self.server.setup.url + path,
            json=body,
            headers={"Authorization": f"Bearer {SOAK_TOKEN}"},
        ) as response:
            result: dict[str, object] = await response.json()
            assert response.status < 300, result
            return result


@pytest.fixture
async def soak(soak_signer: SignerProcess) -> AsyncIterator[Soak]:
    async with aiohttp.ClientSession() as session:
        yield Soak(soak_signer, session)


async def test_no_token_fails_verification_across_rotations(soak: Soak) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(soak.watch_jwks(stop))
    failures: list[str] = []
    pyjwt = PyJwtVerifier(soak.jwks_url, MAX_AGE)
    async with JoseVerifier.running(soak.jwks_url, cache_seconds=MAX_AGE) as jose:

        async def check(issued: Issued, when: str) -> None:
            for name, verifier in (("pyjwt", pyjwt), ("jose", jose)):
                error = await verifier.verify(issued.jwt)
                if error is not None:
                    failures.append(f"{name} {when} kid={issued.kid}: {error}")

        async def check_before_expiry(issued: Issued) -> None:
            await asyncio.sleep(max(0.0, issued.exp - 0.6 - time.time()))
            await check(issued, "before expiry")

        later: list[asyncio.Task[None]] = []
        deadline = time.time() + ROTATION * (ROTATIONS + 3)
        while len(soak.kids()) < ROTATIONS + 1 and time.time() < deadline:
            issued = await soak.issue()
            await check(issued, "at once")
            later.append(asyncio.create_task(check_before_expiry(issued)))
            await asyncio.sleep(0.05)
        await asyncio.gather(*later)
    pyjwt.close()

    kids = soak.kids()
    assert len(kids) >= ROTATIONS + 1, f"only {len(kids) - 1} rotations happened"
    assert failures == []
    # Every key that handed over leaves the JWKS once its drain ends, and not before.
    last_exp = {kid: max(i.exp for i in soak.issued if i.kid == kid) for kid in kids}
    await asyncio.sleep(max(last_exp[k] for k in kids[:-1]) + SKEW + 2.5 - time.time())
    stop.set()
    await watcher
    ring = await soak.admin("GET", f"/v1/rings/{RING}")
    keys: list[dict[str, object]] = ring["keys"]  # type: ignore[assignment]
    states = {k["kid"]: k["state"] for k in keys}
    for kid in kids[:-1]:
        assert states[kid] in ("retired", "destroyed"), (kid, states[kid])
        assert kid in soak.gone_at, f"{kid} never left the JWKS"
        assert soak.gone_at[kid] >= last_exp[kid] + SKEW, "left while a token was valid"
        assert soak.gone_at[kid] <= last_exp[kid] + SKEW + 2.5, "lingered after its drain"


async def test_revoking_the_active_key_mid_soak_cuts_it_off_within_a_second(soak: Soak) -> None:
    pyjwt = PyJwtVerifier(soak.jwks_url, MAX_AGE)
    stop = asyncio.Event()

    async def issue_continuously() -> None:
        while not stop.is_set():
            await soak.issue()
            await asyncio.sleep(0.02)

    issuer = asyncio.create_task(issue_continuously())
    await asyncio.sleep(ROTATION * 1.5)  # at least one rotation first
    target = soak.issued[-1].kid
    revoke_started = time.time()
    answer = await soak.admin("POST", f"/v1/keys/{target}/revoke", {"reason": "soak drill"})
    revoke_returned = time.time()
    new_kid = answer["active_kid"]
    assert new_kid != target

    switched_at = None
    while switched_at is None:
        issued = await soak.issue()
        if issued.kid != target:
            switched_at = time.time()
    async with soak.session.get(soak.jwks_url) as response:
        jwks_kids = {k["kid"] for k in (await response.json())["keys"]}
    unpublished_at = time.time()
    await asyncio.sleep(1.0)
    stop.set()
    await issuer

    assert target not in jwks_kids
    assert switched_at - revoke_started < 1.0
    assert unpublished_at - revoke_started < 1.0
    after = [i for i in soak.issued if i.started > revoke_returned]
    assert after
    assert all(i.kid != target for i in after), "a token signed after revocation carries it"
    # Tokens from the promoted key verify for a relying party with a cached JWKS.
    errors = [await pyjwt.verify(i.jwt) for i in after[-5:]]
    pyjwt.close()
    assert errors == [None] * 5


def token_state(setup: Setup) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(
        run_cli("keys", "list", "--config", str(setup.config), "--json").stdout
    )
    return rows


async def test_sigkill_during_rotations_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Kill the server at random points of its rotations; each restart converges."""
    setup = Setup.create(tmp_path / "kill", soak_config())
    rng = random.Random(os.environ.get("SIGNER_SOAK_SEED", "7"))  # noqa: S311 -- kill timing
    seen_published: dict[str, int] = {}  # kid: latest exp it signed, as clients saw it
    for _ in range(4):
        server = SignerProcess.start(setup)
        try:
            async with aiohttp.ClientSession() as session:  # a new pool: the old server is gone
                soak = Soak(server, session)
                until = time.time() + rng.uniform(0.5, ROTATION * 1.5)
                while time.time() < until:
                    issued = await soak.issue()
                    exp = max(seen_published.get(issued.kid, 0), issued.exp)
                    seen_published[issued.kid] = exp
                    await asyncio.sleep(0.01)
        finally:
            server.kill()

        rows = [r for r in token_state(setup) if r["ring"] == RING]
        states = [r["state"] for r in rows]
        assert states.count("active") == 1
        kids = [r["kid"] for r in rows if r["kid"] is not None]
        assert len(kids) == len(set(kids)), "duplicated key"

    server = SignerProcess.start(setup)
    try:
        async with aiohttp.ClientSession() as session:
            soak = Soak(server, session)
            ring = await soak.admin("GET", f"/v1/rings/{RING}")
            keys: list[dict[str, object]] = ring["keys"]  # type: ignore[assignment]
            records = {str(k["kid"]): k for k in keys}
            async with session.get(soak.jwks_url) as response:
                published = {k["kid"] for k in (await response.json())["keys"]}
    finally:
        server.stop()
    rows = [r for r in token_state(setup) if r["ring"] == RING]
    assert [r for r in rows if r["state"] == "orphan"] == [], "the restart left an orphan"
    assert all(r.get("proof", "ok") == "ok" for r in rows), rows
    now = time.time()
    for kid, exp in seen_published.items():
        # No key a client got a token from is lost: it is still in the store, and published
        # for as long as that token is valid.
        assert kid in records
        if now <= exp + SKEW:
            assert kid in published
    assert sum(1 for r in records.values() if r["state"] == "active") == 1
