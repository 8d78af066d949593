"""The service on a real SoftHSM token and a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jwks.records import KeyState
from signer.errors import KeyProofFailed
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.rings import ref_of
from signer.service import SignerService
from signer.settings import Settings, load_settings
from signer.store.sqlite import SqliteStore
from signer.tokens import JwtRequest
from tests.hsm_token import make_exportable_key

CONFIG = """
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "unused-here"
pin_env = "PIN"

[store]
url = "sqlite://state.db"

[[rings]]
name = "{ring}"
alg = "ES256"
rotation_period = "30d"
prepublish = "2d"
token_max_ttl = "1h"
"""


def settings_for(tmp_path: Path, ring: str) -> Settings:
    path = tmp_path / "signer.toml"
    path.write_text(CONFIG.format(ring=ring))
    return load_settings(path, environ={"PIN": "x"})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    adapter = SqliteStore(tmp_path / "state.db")
    yield adapter
    await adapter.aclose()


def ring_name(request: pytest.FixtureRequest) -> str:
    """A ring name per test, so tests sharing the session token never see each other's keys."""
    return "t" + str(abs(hash(request.node.name)))[:12]


async def test_start_generates_one_active_key_per_ring(
    tmp_path: Path, backend: Pkcs11Backend, store: SqliteStore, request: pytest.FixtureRequest
) -> None:
    settings = settings_for(tmp_path, ring_name(request))
    service = SignerService(settings, backend=backend, store=store, clock=time.time)
    await service.start()
    (record,) = await store.keys(settings.rings[0].name)
    assert record.state is KeyState.ACTIVE
    assert record.label == f"signer/{record.ring}/{record.key_id}"
    # A second start on the same store adopts the key instead of generating another.
    again = SignerService(settings, backend=backend, store=store, clock=time.time)
    await again.start()
    assert await store.keys(settings.rings[0].name) == [record]


async def test_start_refuses_a_key_that_fails_its_custody_proof(
    tmp_path: Path, backend: Pkcs11Backend, store: SqliteStore, request: pytest.FixtureRequest
) -> None:
    """A store record that points at an exportable key on the token stops the start-up."""
    settings = settings_for(tmp_path, ring_name(request))
    service = SignerService(settings, backend=backend, store=store, clock=time.time)
    await service.start()
    (good,) = await store.keys(settings.rings[0].name)
    bad_ref = await make_exportable_key(backend, good.ring)
    await store.aclose()
    tampered = SqliteStore(tmp_path / "state.db")
    try:
        await tampered.aping()
        # Swap the HSM location under the record, as an attacker with store access might.
        await tampered._run(
            lambda conn: conn.execute(
                "UPDATE keys SET key_id = ?, label = ? WHERE kid = ?",
                (bad_ref.key_id, bad_ref.label, good.kid),
            )
        )
        with pytest.raises(KeyProofFailed, match=r"CKA_EXTRACTABLE is true"):
            await SignerService(settings, backend=backend, store=tampered, clock=time.time).start()
    finally:
        await tampered.aclose()
        await backend.destroy(bad_ref)


async def test_start_refuses_a_record_whose_key_on_the_token_is_another(
    tmp_path: Path, backend: Pkcs11Backend, store: SqliteStore, request: pytest.FixtureRequest
) -> None:
    settings = settings_for(tmp_path, ring_name(request))
    service = SignerService(settings, backend=backend, store=store, clock=time.time)
    await service.start()
    (good,) = await store.keys(settings.rings[0].name)
    other = await service.generate_key(settings.rings[0], state=KeyState.PENDING)
    with pytest.raises(KeyProofFailed, match="does not match kid"):
        await service._prove(ref_of(other), kid=good.kid)


async def test_watermark_is_durable_before_the_token_is_returned(
    tmp_path: Path, backend: Pkcs11Backend, store: SqliteStore, request: pytest.FixtureRequest
) -> None:
    settings = settings_for(tmp_path, ring_name(request))
    ring = settings.rings[0].name
    service = SignerService(settings, backend=backend, store=store, clock=lambda: 1_000_000.0)
    await service.start()
    signed = await service.sign_jwt(
        ring, JwtRequest.parse({"claims": {}, "ttl": 60}, token_max_ttl=3600)
    )
    assert signed.exp == 1_000_060
    (record,) = await store.keys(ring)
    assert record.exp_watermark == 1_000_060
    longer = await service.sign_jwt(ring, JwtRequest.parse({"claims": {}}, token_max_ttl=3600))
    (record,) = await store.keys(ring)
    assert record.exp_watermark == longer.exp == 1_003_600
