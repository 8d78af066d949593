"""The ``StateStore`` contract, run against every adapter."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from jwks.algorithms import Alg
from jwks.records import KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId
from signer.errors import KeyNotActive
from signer.store.base import KeyUpdate, StaleWrite, StateStore


def record(
    kid: str, state: KeyState = KeyState.ACTIVE, ring: str = "r", at: int = 100
) -> KeyRecord:
    return KeyRecord(
        kid=KeyId(kid),
        ring=RingName(ring),
        alg=Alg.ES256,
        key_id=kid.encode().hex(),
        label=f"signer/{ring}/{kid}",
        jwk={"kty": "EC", "crv": "P-256", "x": "x-" + kid, "y": "y-" + kid},
        state=state,
        created_at=at,
        published_at=at,
        activated_at=at if state is KeyState.ACTIVE else None,
    )


async def test_inserted_record_reads_back_equal(store: StateStore) -> None:
    original = record("k1")
    await store.insert_key(original)
    assert await store.get_key(KeyId("k1")) == original
    assert await store.keys("r") == [original]
    assert await store.get_key(KeyId("nope")) is None


async def test_keys_are_listed_oldest_first_and_by_ring(store: StateStore) -> None:
    await store.insert_key(record("b", KeyState.PENDING, at=200))
    await store.insert_key(record("a", KeyState.ACTIVE, at=100))
    await store.insert_key(record("c", KeyState.ACTIVE, ring="other"))
    assert [r.kid for r in await store.keys("r")] == ["b", "a"]
    assert [r.kid for r in await store.keys()] == ["b", "a", "c"]


async def test_duplicate_kid_is_refused(store: StateStore) -> None:
    await store.insert_key(record("k1"))
    with pytest.raises(StaleWrite):
        await store.insert_key(record("k1", KeyState.PENDING))


async def test_second_active_key_in_a_ring_is_refused(store: StateStore) -> None:
    """DESIGN.md: exactly one active key per ring, even against a buggy writer."""
    await store.insert_key(record("k1"))
    with pytest.raises(StaleWrite):
        await store.insert_key(record("k2"))


async def test_update_is_compare_and_set_on_state(store: StateStore) -> None:
    active = record("k1")
    pending = record("k2", KeyState.PENDING)
    await store.insert_key(active)
    await store.insert_key(pending)
    swap = [
        KeyUpdate(record=active.with_state(KeyState.DRAINING, 500), expected=KeyState.ACTIVE),
        KeyUpdate(record=pending.with_state(KeyState.ACTIVE, 500), expected=KeyState.PENDING),
    ]
    await store.update_keys(swap)
    assert (await store.get_key(KeyId("k1"))) == swap[0].record
    assert (await store.get_key(KeyId("k2"))) == swap[1].record
    with pytest.raises(StaleWrite):
        await store.update_keys(swap)


async def test_failed_update_changes_nothing(store: StateStore) -> None:
    """All-or-nothing: one stale item rolls the whole batch back."""
    k1 = record("k1")
    k2 = record("k2", KeyState.PENDING)
    await store.insert_key(k1)
    await store.insert_key(k2)
    batch = [
        KeyUpdate(record=k1.with_state(KeyState.DRAINING, 9), expected=KeyState.ACTIVE),
        KeyUpdate(record=k2.with_state(KeyState.DRAINING, 9), expected=KeyState.ACTIVE),
    ]
    with pytest.raises(StaleWrite):
        await store.update_keys(batch)
    assert await store.get_key(KeyId("k1")) == k1
    assert await store.get_key(KeyId("k2")) == k2


async def test_watermark_only_rises(store: StateStore) -> None:
    await store.insert_key(record("k1"))
    assert await store.raise_watermark(KeyId("k1"), 1000) == 1000
    assert await store.raise_watermark(KeyId("k1"), 900) == 1000
    assert await store.raise_watermark(KeyId("k1"), 1100) == 1100
    stored = await store.get_key(KeyId("k1"))
    assert stored is not None
    assert stored.exp_watermark == 1100


async def test_watermark_refused_for_a_key_that_is_not_active(store: StateStore) -> None:
    """A revoked or drained key can never reserve another exp (it must not sign)."""
    await store.insert_key(record("k1", KeyState.PENDING))
    with pytest.raises(KeyNotActive):
        await store.raise_watermark(KeyId("k1"), 1000)


async def test_concurrent_watermarks_keep_the_maximum(store: StateStore) -> None:
    await store.insert_key(record("k1"))
    await asyncio.gather(*(store.raise_watermark(KeyId("k1"), e) for e in range(1, 200)))
    stored = await store.get_key(KeyId("k1"))
    assert stored is not None
    assert stored.exp_watermark == 199


async def test_revoke_reason_and_timestamps_persist(store: StateStore) -> None:
    k1 = record("k1")
    await store.insert_key(k1)
    revoked = k1.with_state(KeyState.REVOKED, 777, revoke_reason="leaked")
    await store.update_keys([KeyUpdate(record=revoked, expected=KeyState.ACTIVE)])
    stored = await store.get_key(KeyId("k1"))
    assert stored == dataclasses.replace(
        k1, state=KeyState.REVOKED, revoked_at=777, revoke_reason="leaked"
    )


async def test_ping_answers(store: StateStore) -> None:
    await store.aping()
