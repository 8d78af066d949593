"""The lifecycle shell on a real SoftHSM token and a real SQLite file (or Redis), moved clock."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from jwks.records import KeyRecord, KeyState
from signer.audit.chain import AuditEntry, AuditRecord
from signer.audit.writer import AuditWriter
from signer.errors import (
    Conflict,
    HsmUnavailable,
    InvalidField,
    KeyProofFailed,
    StoreUnavailable,
)
from signer.hsm.base import KeyRef
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.keeper import Keeper
from signer.leadership import LEASE, LEASE_TTL
from signer.rings import PUBLICATION_SLACK, ref_of
from signer.service import AUDIT_KID, AUDIT_POLICY, AUDIT_RING, SignerService
from signer.settings import Settings, load_settings
from signer.store.base import Fence, FencedOut, KeyUpdate, StateStore
from signer.store.redis import RedisStore
from signer.store.sqlite import SqliteStore
from signer.tokens import JwtRequest
from tests.fakes import MovingClock
from tests.hsm_token import make_exportable_key, new_key_id
from tests.redis_server import shared_redis_server

T0 = 1_800_000_000
PERIOD, PREPUBLISH, MAX_TTL, SKEW, RETAIN = 1000, 300, 120, 5, 500

CONFIG = f"""
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "unused-here"
pin_env = "PIN"

[store]
url = "sqlite://state.db"

[[rings]]
name = "{{ring}}"
alg = "ES256"
rotation_period = {PERIOD}
prepublish = {PREPUBLISH}
jwks_max_age = 60
token_max_ttl = {MAX_TTL}
clock_skew = {SKEW}
retain = {RETAIN}
allow_immediate_rotation = {{immediate}}
"""


@dataclass
class Rig:
    """A service and its keeper over one ring on the session token."""

    settings: Settings
    service: SignerService
    keeper: Keeper
    store: StateStore
    clock: MovingClock
    ring: str
    audit: AuditWriter

    async def records(self) -> list[KeyRecord]:
        return await self.store.keys(self.ring)

    async def states(self) -> list[str]:
        return [r.state.value for r in await self.records()]

    async def sign(self, ttl: int = MAX_TTL) -> str:
        request = JwtRequest.parse({"claims": {}, "ttl": ttl}, token_max_ttl=MAX_TTL)
        return (await self.service.sign_jwt(self.ring, request, actor="test")).kid

    def published(self) -> list[str]:
        return [
            r.kid
            for r in self.service.view(self.ring).records
            if r.state.value in ("pending", "active", "draining")
        ]

    async def advance(self, seconds: int) -> None:
        self.clock.now += seconds
        await self.keeper.tick(self.settings.rings[0])


def make_rig(
    tmp_path: Path,
    backend: Pkcs11Backend,
    ring: str,
    *,
    immediate: bool = False,
    store: StateStore | None = None,
    clock: MovingClock | None = None,
    shared: bool = False,
) -> Rig:
    path = tmp_path / "signer.toml"
    path.write_text(CONFIG.format(ring=ring, immediate=str(immediate).lower()))
    settings = load_settings(path, environ={"PIN": "x"})
    store = store or SqliteStore(tmp_path / "state.db")
    clock = clock or MovingClock(T0)
    audit = AuditWriter(store, clock=clock)
    service = SignerService(settings, backend=backend, store=store, clock=clock, audit=audit)
    return Rig(settings, service, Keeper(service, audit, shared=shared), store, clock, ring, audit)


@pytest.fixture
async def rig(tmp_path: Path, backend: Pkcs11Backend) -> AsyncIterator[Rig]:
    """A started ring of its own (unique name on the shared token)."""
    made = make_rig(tmp_path, backend, "r" + new_key_id()[:12])
    await made.audit.start()
    await made.keeper.start()
    yield made
    await made.audit.aclose()
    await made.store.aclose()


@pytest.fixture
async def immediate_rig(tmp_path: Path, backend: Pkcs11Backend) -> AsyncIterator[Rig]:
    """A started ring that allows immediate rotation."""
    made = make_rig(tmp_path, backend, "i" + new_key_id()[:12], immediate=True)
    await made.audit.start()
    await made.keeper.start()
    yield made
    await made.audit.aclose()
    await made.store.aclose()


async def test_start_publishes_an_active_key_and_a_standby(rig: Rig) -> None:
    records = await rig.records()
    assert [r.state for r in records] == [KeyState.ACTIVE, KeyState.PENDING]
    assert all(r.label == f"signer/{rig.ring}/{r.key_id}" for r in records)
    assert rig.published() == [r.kid for r in records]


async def test_second_start_adopts_the_keys(rig: Rig, backend: Pkcs11Backend) -> None:
    before = await rig.records()
    again = SignerService(
        rig.settings, backend=backend, store=rig.store, clock=rig.clock, audit=rig.audit
    )
    await Keeper(again, rig.audit).start()
    assert await rig.records() == before


async def test_scheduled_rotation_uses_the_prepublished_standby(rig: Rig) -> None:
    first, standby = await rig.records()
    await rig.advance(PERIOD - 1)
    assert await rig.sign() == first.kid
    await rig.advance(1)
    assert await rig.sign() == standby.kid
    old, new, next_standby = await rig.records()
    assert (old.state, new.state, next_standby.state) == (
        KeyState.DRAINING,
        KeyState.ACTIVE,
        KeyState.PENDING,
    )
    assert not new.emergency
    assert new.activated_at is not None
    assert new.published_at is not None
    assert new.activated_at - new.published_at >= PREPUBLISH


async def test_draining_key_stays_published_until_its_last_token_expires(rig: Rig) -> None:
    first = (await rig.records())[0]
    await rig.advance(PERIOD - 10)
    assert await rig.sign(ttl=MAX_TTL) == first.kid  # exp = T0 + PERIOD - 10 + MAX_TTL
    last_exp = int(rig.clock.now) + MAX_TTL
    await rig.advance(10)  # rotation
    assert first.kid in rig.published()
    await rig.advance(last_exp + SKEW - int(rig.clock.now))  # now == exp + skew: not yet
    assert first.kid in rig.published()
    await rig.advance(1)  # now > exp + skew
    assert first.kid not in rig.published()
    assert (await rig.store.get_key(first.kid)).state is KeyState.RETIRED  # type: ignore[union-attr]


async def test_retired_key_is_destroyed_on_the_token_after_retain(
    rig: Rig, backend: Pkcs11Backend
) -> None:
    first = (await rig.records())[0]
    await rig.advance(PERIOD)
    await rig.advance(SKEW + 1)
    assert (await rig.store.get_key(first.kid)).state is KeyState.RETIRED  # type: ignore[union-attr]
    await rig.advance(RETAIN)
    assert (await rig.store.get_key(first.kid)).state is KeyState.DESTROYED  # type: ignore[union-attr]
    on_token = {ref.key_id for ref in await backend.list_refs(f"signer/{rig.ring}/")}
    assert first.key_id not in on_token


async def test_a_destroy_the_token_refused_is_retried_until_the_key_is_gone(
    rig: Rig, backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record says destroyed before the token is told; if the token refuses, the
    running keeper tries again rather than leaving the key there until the next start."""
    first = (await rig.records())[0]
    await rig.advance(PERIOD)
    await rig.advance(SKEW + 1)
    destroy = backend.destroy

    async def refused(ref: KeyRef) -> None:
        raise HsmUnavailable("the token is busy")

    monkeypatch.setattr(backend, "destroy", refused)
    with pytest.raises(HsmUnavailable):
        await rig.advance(RETAIN)
    assert (await rig.store.get_key(first.kid)).state is KeyState.DESTROYED  # type: ignore[union-attr]
    await rig.keeper.finish_destroys()  # refused again: kept for later, the loop goes on
    assert first.key_id in await key_ids_on_token(backend, rig.ring)

    monkeypatch.setattr(backend, "destroy", destroy)
    running = asyncio.create_task(rig.keeper.run())
    try:
        for _ in range(100):
            if first.key_id not in await key_ids_on_token(backend, rig.ring):
                break
            await asyncio.sleep(0.05)
        assert first.key_id not in await key_ids_on_token(backend, rig.ring)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def key_ids_on_token(backend: Pkcs11Backend, ring: str) -> set[str]:
    return {ref.key_id for ref in await backend.list_refs(f"signer/{ring}/")}


async def test_requested_rotation_waits_for_prepublication(rig: Rig) -> None:
    first, standby = await rig.records()
    # Right after start the standby is fresh: an early rotation must wait for it.
    accepted = await rig.keeper.rotate(rig.ring, immediate=False)
    assert accepted.activates_at == T0 + PREPUBLISH
    assert await rig.sign() == first.kid
    await rig.advance(PREPUBLISH)
    assert await rig.sign() == standby.kid


async def test_immediate_rotation_is_refused_unless_the_ring_allows_it(rig: Rig) -> None:
    with pytest.raises(InvalidField, match="immediate"):
        await rig.keeper.rotate(rig.ring, immediate=True)


async def test_immediate_rotation_when_allowed_switches_at_once(immediate_rig: Rig) -> None:
    rig = immediate_rig
    _, standby = await rig.records()
    await rig.keeper.rotate(rig.ring, immediate=True)
    assert await rig.sign() == standby.kid
    assert (await rig.store.get_key(standby.kid)).emergency  # type: ignore[union-attr]


async def test_revoking_the_active_key_promotes_the_standby_at_once(rig: Rig) -> None:
    first, standby = await rig.records()
    done = await rig.keeper.revoke(first.kid, "key material exposed")
    assert done.active == standby.kid
    assert done.revoked.state is KeyState.REVOKED
    assert done.revoked.revoke_reason == "key material exposed"
    assert first.kid not in rig.published()
    assert await rig.sign() == standby.kid
    assert await rig.states() == ["revoked", "active", "pending"]  # a new standby is published


async def test_revoking_with_no_standby_generates_a_key_that_signs_at_once(rig: Rig) -> None:
    first, standby = await rig.records()
    # The standby is gone (as after a crash right after revoking it): nothing pre-published.
    gone = standby.with_state(KeyState.REVOKED, T0, revoke_reason="suspected")
    await rig.store.update_keys([KeyUpdate(record=gone, expected=KeyState.PENDING)])
    done = await rig.keeper.revoke(first.kid, "compromised")
    assert done.active is not None
    assert done.active not in {first.kid, standby.kid}
    assert await rig.sign() == done.active
    assert (await rig.store.get_key(done.active)).emergency  # type: ignore[union-attr]


async def test_a_revocation_stands_when_its_new_key_cannot_be_made(
    rig: Rig, backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill-switch is answered as done once it is written, even if the HSM then fails to
    make the replacement: reporting it failed would say the key still signs. The scheduler
    makes the key when the HSM is back."""
    first, standby = await rig.records()
    gone = standby.with_state(KeyState.REVOKED, T0, revoke_reason="suspected")
    await rig.store.update_keys([KeyUpdate(record=gone, expected=KeyState.PENDING)])
    generate = backend.generate

    async def refused(*args: object, **kwargs: object) -> KeyRef:
        raise HsmUnavailable("the token is busy")

    monkeypatch.setattr(backend, "generate", refused)
    done = await rig.keeper.revoke(first.kid, "compromised")
    assert done.revoked.state is KeyState.REVOKED
    assert done.active is None
    assert rig.service.view(rig.ring).signing is None
    assert first.kid not in rig.published()

    monkeypatch.setattr(backend, "generate", generate)
    await rig.advance(0)
    active = rig.service.view(rig.ring).signing
    assert active is not None
    assert active.record.kid not in {first.kid, standby.kid}
    assert await rig.sign() == active.record.kid


async def test_an_immediate_rotation_stands_when_its_new_standby_cannot_be_made(
    immediate_rig: Rig, backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = immediate_rig
    _, standby = await rig.records()

    async def refused(*args: object, **kwargs: object) -> KeyRef:
        raise HsmUnavailable("the token is busy")

    monkeypatch.setattr(backend, "generate", refused)
    await rig.keeper.rotate(rig.ring, immediate=True)
    assert await rig.sign() == standby.kid
    assert "pending" not in await rig.states()  # the scheduler makes it later


async def test_revoking_twice_is_a_conflict(rig: Rig) -> None:
    first, _ = await rig.records()
    await rig.keeper.revoke(first.kid, "one")
    with pytest.raises(Conflict, match="already revoked"):
        await rig.keeper.revoke(first.kid, "two")


async def test_start_destroys_an_orphan_from_an_interrupted_generate(
    tmp_path: Path, backend: Pkcs11Backend
) -> None:
    """A key made on the token whose record never landed is destroyed, never used."""
    ring = "o" + new_key_id()[:12]
    key_id = new_key_id()
    fresh = make_rig(tmp_path, backend, ring)
    orphan = await backend.generate(fresh.settings.rings[0].alg, key_id, f"signer/{ring}/{key_id}")
    await fresh.audit.start()
    await fresh.keeper.start()
    on_token = {ref.key_id for ref in await backend.list_refs(f"signer/{ring}/")}
    assert orphan.key_id not in on_token
    assert on_token == {r.key_id for r in await fresh.records()}
    await fresh.audit.aclose()
    await fresh.store.aclose()


async def test_start_finishes_an_interrupted_destroy(rig: Rig, backend: Pkcs11Backend) -> None:
    first, _ = await rig.records()
    await rig.keeper.revoke(first.kid, "x")
    revoked = await rig.store.get_key(first.kid)
    assert revoked is not None
    # The record says destroyed but the crash came before the token was told.
    destroyed = revoked.with_state(KeyState.DESTROYED, T0)
    await rig.store.update_keys([KeyUpdate(record=destroyed, expected=KeyState.REVOKED)])
    await rig.keeper.start()
    on_token = {ref.key_id for ref in await backend.list_refs(f"signer/{rig.ring}/")}
    assert first.key_id not in on_token


async def test_start_refuses_a_key_that_fails_its_custody_proof(
    rig: Rig, backend: Pkcs11Backend
) -> None:
    """A record pointing at an exportable key (as a store attacker might arrange) stops start."""
    first, _ = await rig.records()
    bad = await make_exportable_key(backend, "elsewhere")
    assert isinstance(rig.store, SqliteStore)
    try:
        await rig.store._run(  # reach under the port, as the attacker would
            lambda conn: conn.execute(
                "UPDATE keys SET key_id = ?, label = ? WHERE kid = ?",
                (bad.key_id, bad.label, first.kid),
            )
        )
        with pytest.raises(KeyProofFailed, match="CKA_EXTRACTABLE is true"):
            await rig.keeper.start()
    finally:
        await backend.destroy(bad)


async def test_start_refuses_a_record_whose_token_key_is_another(rig: Rig) -> None:
    first, standby = await rig.records()
    swapped = KeyRecord(
        **{**{f: getattr(standby, f) for f in standby.__dataclass_fields__}, "kid": first.kid}
    )
    with pytest.raises(KeyProofFailed, match="does not match kid"):
        await rig.service.prove_record(swapped)


async def test_watermark_is_durable_before_the_token_is_returned(rig: Rig) -> None:
    await rig.sign(ttl=60)
    assert (await rig.records())[0].exp_watermark == T0 + 60
    await rig.sign(ttl=MAX_TTL)
    assert (await rig.records())[0].exp_watermark == T0 + MAX_TTL
    await rig.sign(ttl=1)  # a shorter token never lowers it
    assert (await rig.records())[0].exp_watermark == T0 + MAX_TTL


async def test_claims_that_cannot_be_encoded_leave_the_watermark_alone(rig: Rig) -> None:
    """The body parser refuses such claims; should any get past it, the token fails before
    the watermark is raised for a token that never leaves."""
    active = (await rig.records())[0]
    unencodable = JwtRequest(claims={"x": float("inf")}, ttl=None, typ="JWT")
    with pytest.raises(ValueError, match="not JSON compliant"):
        await rig.service.sign_jwt(rig.ring, unencodable, actor="test")
    assert (await rig.store.get_key(active.kid)).exp_watermark is None  # type: ignore[union-attr]


async def test_jwks_max_age_never_passes_the_next_key_set_change(rig: Rig) -> None:
    view = rig.service.view(rig.ring)
    assert view.cache_max_age(T0) == 60 - PUBLICATION_SLACK  # jwks_max_age, less the slack
    assert view.cache_max_age(T0 + PERIOD - 10) == 10  # rotation adds a standby in 10 s


@pytest.mark.parametrize(("at", "max_age", "stale"), [(0, 29, 29), (PERIOD - 10, 5, 5)])
async def test_a_cache_holds_the_jwks_no_longer_than_allowed_stale_time_included(
    rig: Rig, at: int, max_age: int, stale: int
) -> None:
    """stale-while-revalidate lets a cache serve the document past max-age: the two together
    stay within jwks_max_age (less the slack) and before the next change."""
    headers = rig.service.view(rig.ring).cache_headers(T0 + at)
    assert headers["Cache-Control"] == (
        f"public, max-age={max_age}, stale-while-revalidate={stale}"
    )
    ref = ref_of((await rig.records())[0])
    assert ref.label.startswith(f"signer/{rig.ring}/")


async def test_etag_changes_exactly_when_the_key_set_changes(rig: Rig) -> None:
    before = rig.service.view(rig.ring).jwks
    await rig.advance(1)  # nothing due: a tick rebuilds the view from the same records
    assert rig.service.view(rig.ring).jwks == before
    first, _ = await rig.records()
    await rig.sign()
    assert rig.service.view(rig.ring).jwks.etag == before.etag  # a watermark is not a key change
    await rig.advance(PERIOD)  # rotation: a new standby joins
    rotated = rig.service.view(rig.ring).jwks
    assert rotated.etag != before.etag
    await rig.advance(MAX_TTL + SKEW + 1)  # the drained key leaves
    drained = rig.service.view(rig.ring).jwks
    assert drained.etag != rotated.etag
    assert first.kid.encode() not in drained.body


async def test_policy_changes_are_audited_once(
    rig: Rig, tmp_path: Path, backend: Pkcs11Backend
) -> None:
    def policy_records(records: list[AuditRecord]) -> list[AuditRecord]:
        return [r for r in records if r.action == "ring.policy" and r.target == f"ring/{rig.ring}"]

    (first,) = policy_records(await rig.store.audit_records())
    assert first.details["before"] is None
    await rig.keeper.start()  # same policy again: nothing new
    assert len(policy_records(await rig.store.audit_records())) == 1
    changed = make_rig(tmp_path, backend, rig.ring, immediate=True)
    await changed.audit.start()
    await changed.keeper.start()
    records = policy_records(await changed.store.audit_records())
    await changed.audit.aclose()
    await changed.store.aclose()
    assert len(records) == 2
    after = records[1].details["after"]
    assert isinstance(after, dict)
    assert after["allow_immediate_rotation"] is True


async def replica_pair(
    tmp_path: Path, backend: Pkcs11Backend, stores: Sequence[StateStore], ring: str
) -> tuple[Rig, Rig]:
    """Two processes' worth of service and keeper over one store; the first leads."""
    clock = MovingClock(T0)
    for i in range(len(stores)):
        (tmp_path / str(i)).mkdir()
    rigs = [
        make_rig(tmp_path / str(i), backend, ring, store=store, clock=clock, shared=True)
        for i, store in enumerate(stores)
    ]
    for made in rigs:
        await made.audit.start()
        await made.keeper.start()
    return rigs[0], rigs[1]


async def close_rigs(*rigs: Rig) -> None:
    for made in rigs:
        await made.audit.aclose()
        await made.store.aclose()


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
async def test_a_follower_returns_no_token_of_a_key_revoked_elsewhere(
    tmp_path: Path, backend: Pkcs11Backend, redis_url: str, store_kind: str
) -> None:
    """The leader's revocation has not reached the follower's view yet (it re-reads the store
    every half second) and the follower's watermark needs no write this second: its audit
    commit still refuses the revoked key, and it signs again with the new one once its view
    catches up."""
    if store_kind == "sqlite":
        path = tmp_path / "state.db"
        stores: list[StateStore] = [SqliteStore(path), SqliteStore(path)]
    else:
        prefix = f"keeper{secrets.token_hex(4)}:"
        stores = [RedisStore.from_url(redis_url, prefix=prefix) for _ in (0, 1)]
    leader, follower = await replica_pair(tmp_path, backend, stores, "f" + new_key_id()[:12])
    try:
        active = follower.service.view(follower.ring).signing
        assert active is not None
        assert await follower.sign() == active.record.kid  # the watermark for this second
        done = await leader.keeper.revoke(active.record.kid, "compromised")
        assert follower.service.view(follower.ring).signing == active  # not seen yet

        async def catch_up() -> None:
            await asyncio.sleep(0.2)
            await follower.keeper.reload()

        reloading = asyncio.create_task(catch_up())
        kid = await follower.sign()
        await reloading
        assert kid == done.active
        audited = [
            r.details["kid"] for r in await follower.store.audit_records() if r.action == "jwt.sign"
        ]
        assert audited == [active.record.kid, done.active]  # no record of a refused token
    finally:
        await close_rigs(leader, follower)


async def test_shared_keepers_elect_one_leader_with_an_epoch(
    tmp_path: Path, backend: Pkcs11Backend
) -> None:
    path = tmp_path / "state.db"
    stores = [SqliteStore(path), SqliteStore(path)]
    leader, follower = await replica_pair(tmp_path, backend, stores, "e" + new_key_id()[:12])
    try:
        assert leader.keeper.leader
        assert leader.keeper.epoch is not None
        assert not follower.keeper.leader
        assert follower.keeper.epoch is None
        assert follower.published() == leader.published()  # the follower adopted the keys
    finally:
        await close_rigs(leader, follower)


async def test_a_fenced_out_former_leader_cannot_write(
    tmp_path: Path, backend: Pkcs11Backend
) -> None:
    """The leader pauses past its lease, another takes over; the old one's next write is refused
    and it drops leadership instead of acting on a stale view."""
    path = tmp_path / "state.db"
    stores = [SqliteStore(path), SqliteStore(path)]
    old, new = await replica_pair(tmp_path, backend, stores, "f" + new_key_id()[:12])
    try:
        old_epoch = old.keeper.epoch
        assert old_epoch is not None
        old.clock.now += LEASE_TTL + 1  # the old leader is paused: its lease runs out
        await new.keeper.start()  # and the other process takes over (at a new epoch)
        assert new.keeper.leader
        assert new.keeper.epoch == old_epoch + 1
        before = await new.records()
        old.clock.now += PERIOD  # a scheduled step is due; the old leader still thinks it leads
        with pytest.raises(FencedOut):
            await old.keeper.tick(old.settings.rings[0])
        assert not old.keeper.leader
        assert await new.records() == before
        stale = Fence(name=LEASE, owner="anyone", epoch=old_epoch)
        with pytest.raises(FencedOut):
            await new.store.update_keys([], fence=stale)
    finally:
        await close_rigs(old, new)


async def test_an_operators_request_to_a_fenced_out_leader_is_served_as_by_a_follower(
    tmp_path: Path, backend: Pkcs11Backend
) -> None:
    """Losing the lease is internal: the operator's rotation still lands (unfenced, under the
    keys' compare-and-set), and the former leader steps down instead of answering 409."""
    path = tmp_path / "state.db"
    stores = [SqliteStore(path), SqliteStore(path)]
    old, new = await replica_pair(tmp_path, backend, stores, "g" + new_key_id()[:12])
    try:
        old.clock.now += LEASE_TTL + 1
        await new.keeper.start()

        await old.keeper.rotate(old.ring, immediate=False, actor="admin")

        assert not old.keeper.leader
        active = [r for r in await new.records() if r.state is KeyState.ACTIVE]
        assert active[0].rotate_requested_at is not None
    finally:
        await close_rigs(old, new)


async def test_start_adopts_an_audit_key_whose_pointer_was_never_written(
    tmp_path: Path, backend: Pkcs11Backend
) -> None:
    """A crash between inserting the audit key's record and pointing at it must not leave a
    signer that can never start again (a second active key in the audit ring is refused)."""
    fresh = make_rig(tmp_path, backend, "a" + new_key_id()[:12])
    orphaned = await fresh.service.generate_key(AUDIT_POLICY, active=True)
    await fresh.store.insert_key(orphaned)  # ... and the process died before set_meta
    await fresh.audit.start()
    try:
        await fresh.keeper.start()

        assert await fresh.store.get_meta(AUDIT_KID) == orphaned.kid
        audit_keys = await fresh.store.keys(AUDIT_RING)
        assert [k.kid for k in audit_keys] == [orphaned.kid]
    finally:
        await fresh.audit.aclose()
        await fresh.store.aclose()


async def test_a_paused_former_leaders_sweep_spares_the_new_leaders_key(
    tmp_path: Path, backend: Pkcs11Backend
) -> None:
    """The new leader has made a key on the token and not yet recorded it; the old leader,
    waking from a pause and still believing it leads, sweeps: that key must survive."""
    path = tmp_path / "state.db"
    stores = [SqliteStore(path), SqliteStore(path)]
    old, new = await replica_pair(tmp_path, backend, stores, "w" + new_key_id()[:12])
    try:
        old.clock.now += LEASE_TTL + 1  # the old leader is paused: its lease runs out
        await new.keeper.start()
        assert new.keeper.leader
        key_id = new_key_id()  # the new leader's generation, its insert still in flight
        in_flight = await backend.generate(
            new.settings.rings[0].alg, key_id, f"signer/{new.ring}/{key_id}"
        )
        assert old.keeper.leader  # it has not noticed yet

        await old.keeper.sweep()

        on_token = {ref.key_id for ref in await backend.list_refs(f"signer/{new.ring}/")}
        assert in_flight.key_id in on_token
        assert not old.keeper.leader
    finally:
        await close_rigs(old, new)


class FailsNextInsert(SqliteStore):
    """A store whose next ``insert_key`` fails: before committing, or after (answer lost)."""

    fail_next: str | None = None  # "before" or "after"

    async def insert_key(
        self,
        record: KeyRecord,
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        when, self.fail_next = self.fail_next, None
        if when == "before":
            raise StoreUnavailable("the store is unreachable")
        await super().insert_key(record, audit=audit, fence=fence)
        if when == "after":
            raise StoreUnavailable("the answer was lost")


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_retried_generation_reuses_the_key_it_made(
    tmp_path: Path, backend: Pkcs11Backend, when: str
) -> None:
    """Generation is idempotent per epoch: a failed insert, committed or not, and its retry
    leave exactly one new key on the token."""
    store = FailsNextInsert(tmp_path / "state.db")
    fresh = make_rig(tmp_path, backend, "g" + new_key_id()[:12], store=store)
    await fresh.audit.start()
    await fresh.keeper.start()
    try:
        _, standby = await fresh.records()
        store.fail_next = when
        # The replacement's insert fails; the revocation stands and its tick retries.
        done = await fresh.keeper.revoke(standby.kid, "lost laptop")
        assert done.revoked.state is KeyState.REVOKED
        await fresh.advance(1)  # the record is there, the token has one new key
        on_token = {ref.key_id for ref in await backend.list_refs(f"signer/{fresh.ring}/")}
        records = await fresh.records()
        assert [r.state for r in records] == [KeyState.ACTIVE, KeyState.REVOKED, KeyState.PENDING]
        assert on_token == {r.key_id for r in records}
    finally:
        await close_rigs(fresh)


@pytest.fixture
def redis_url() -> str:
    """The shared test redis-server's URL."""
    return shared_redis_server().url


async def test_a_follower_on_redis_refreshes_on_a_change_notification(
    tmp_path: Path, backend: Pkcs11Backend, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the periodic re-read pushed far away, only the change feed can update the view."""
    monkeypatch.setattr("signer.keeper.FOLLOW_SECONDS", 60.0)
    prefix = f"keeper{secrets.token_hex(4)}:"
    stores: list[StateStore] = [RedisStore.from_url(redis_url, prefix=prefix) for _ in (0, 1)]
    leader, follower = await replica_pair(tmp_path, backend, stores, "n" + new_key_id()[:12])
    following = asyncio.create_task(follower.keeper.run())
    try:
        assert not follower.keeper.leader  # Redis is shared by nature: no `shared=` needed
        await asyncio.sleep(0.2)  # the follower's subscription is in place
        first, standby = await leader.records()
        await leader.keeper.revoke(first.kid, "compromised")
        await wait_for(lambda: first.kid not in follower.published())
        assert follower.service.view(follower.ring).signing.record.kid == standby.kid  # type: ignore[union-attr]
    finally:
        following.cancel()
        with pytest.raises(asyncio.CancelledError):
            await following
        await close_rigs(leader, follower)


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds, for up to 5 s (real time: another task acts)."""
    async with asyncio.timeout(5.0):
        while not condition():  # noqa: ASYNC110 -- the view has no event to wait on
            await asyncio.sleep(0.02)
