"""Store conformance for signing requests: every adapter stores, lists and CAS-updates them."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwks.records import KeyState
from jwks.thumbprint import KeyId
from signer.audit.chain import AuditEntry
from signer.codesign.records import (
    Kind,
    RequestState,
    SigningRequest,
    SigningRequestId,
    settle,
    with_outputs,
)
from signer.store.base import KeysNotActive, KeyUpdate, StaleWrite, StateStore
from tests.signer.codesign.conftest import make_request, signed_outputs
from tests.signer.store.conftest import Reopen, approval_request
from tests.signer.store.test_conformance import record as key_record


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    """Signs the outputs of the records stored here."""
    return ec.generate_private_key(ec.SECP256R1())


def request(n: int, kind: Kind = Kind.BLOB) -> SigningRequest:
    return make_request(kind, id=SigningRequestId(f"sr_{n}"), created_at=1_800_000_000 + n)


def entry(action: str, n: int) -> AuditEntry:
    return AuditEntry(
        time="2026-11-29T01:02:03.000000Z",
        actor="ci",
        action=action,
        target=f"signing-request/sr_{n}",
        outcome="success",
        details={"n": n},
    )


async def test_an_inserted_request_reads_back_equal(store: StateStore) -> None:
    for n, kind in enumerate(Kind):
        await store.insert_signing_request(request(n, kind))
        assert await store.get_signing_request(f"sr_{n}") == request(n, kind)
    assert await store.get_signing_request("sr_missing") is None


async def test_inserting_an_existing_id_is_a_stale_write(store: StateStore) -> None:
    await store.insert_signing_request(request(1))
    with pytest.raises(StaleWrite):
        await store.insert_signing_request(request(1))


async def test_requests_are_listed_oldest_first_and_by_state(store: StateStore) -> None:
    for n in (3, 1, 2):
        await store.insert_signing_request(request(n))
    denied = settle(request(2), "denied")
    assert denied is not None
    await store.update_signing_request(denied, expected_version=1)
    assert [r.id for r in await store.signing_requests()] == ["sr_1", "sr_2", "sr_3"]
    pending = await store.signing_requests(state="pending")
    assert [r.id for r in pending] == ["sr_1", "sr_3"]
    assert [r.id for r in await store.signing_requests(state="denied")] == ["sr_2"]


async def test_an_update_is_a_compare_and_set_on_version(
    store: StateStore, key: ec.EllipticCurvePrivateKey
) -> None:
    original = request(1, Kind.CONTAINER)
    await store.insert_signing_request(original)
    signed = with_outputs(original, signed_outputs(key, original), ring="codesign", kid="k", now=9)
    await store.update_signing_request(signed, expected_version=1)
    assert await store.get_signing_request("sr_1") == signed
    denied = settle(original, "denied")
    assert denied is not None
    with pytest.raises(StaleWrite):
        await store.update_signing_request(denied, expected_version=1)
    stored = await store.get_signing_request("sr_1")
    assert stored is not None
    assert stored.state is RequestState.SIGNED
    assert stored.outputs == signed.outputs


async def test_updating_a_missing_request_is_a_stale_write(store: StateStore) -> None:
    with pytest.raises(StaleWrite):
        await store.update_signing_request(request(1), expected_version=1)


async def test_two_racing_updates_from_one_version_land_once(
    store: StateStore, reopen: Reopen, key: ec.EllipticCurvePrivateKey
) -> None:
    other = await reopen()
    original = request(1)
    await store.insert_signing_request(original)
    signed = with_outputs(original, signed_outputs(key, original), ring="cs", kid="k", now=9)
    denied = settle(original, "expired")
    assert denied is not None
    results = await asyncio.gather(
        store.update_signing_request(signed, expected_version=1),
        other.update_signing_request(denied, expected_version=1),
        return_exceptions=True,
    )
    assert sum(isinstance(r, StaleWrite) for r in results) == 1
    assert sum(r is None for r in results) == 1


async def test_audit_records_commit_with_the_write_or_not_at_all(
    store: StateStore,
) -> None:
    await store.insert_signing_request(request(1), audit=[entry("signing.request", 1)])
    bumped = dataclasses.replace(request(1), approval_id="apr_1", version=2)
    await store.update_signing_request(bumped, expected_version=1, audit=[entry("signing.link", 1)])
    with pytest.raises(StaleWrite):
        await store.update_signing_request(
            bumped, expected_version=1, audit=[entry("signing.sign", 1)]
        )
    actions = [r.action for r in await store.audit_records()]
    assert actions == ["signing.request", "signing.link"]


async def test_a_request_and_its_approval_are_inserted_together(store: StateStore) -> None:
    approval = approval_request()
    linked = dataclasses.replace(request(1), approval_id=approval.id)
    audit = [entry("approval.create", 1), entry("signing.request", 1)]
    await store.insert_signing_request(linked, approval=approval, audit=audit)
    assert await store.get_signing_request("sr_1") == linked
    assert await store.get_approval(approval.id) == approval
    assert [r.action for r in await store.audit_records()] == ["approval.create", "signing.request"]


@pytest.mark.parametrize("taken", ["request", "approval"])
async def test_a_taken_id_writes_neither_the_request_nor_its_approval(
    store: StateStore, taken: str
) -> None:
    """Either id already in use: a StaleWrite, and the other document and the audit are not
    written either."""
    approval = approval_request()
    if taken == "request":
        await store.insert_signing_request(request(1))
    else:
        await store.insert_approval(approval)
    before = await store.audit_records()
    linked = dataclasses.replace(request(1), approval_id=approval.id)
    with pytest.raises(StaleWrite):
        await store.insert_signing_request(
            linked, approval=approval, audit=[entry("signing.request", 1)]
        )
    assert await store.audit_records() == before
    if taken == "request":
        assert await store.get_approval(approval.id) is None
        assert await store.get_signing_request("sr_1") == request(1)
    else:
        assert await store.get_signing_request("sr_1") is None


async def test_outputs_are_stored_only_while_their_signing_key_is_active(
    store: StateStore, key: ec.EllipticCurvePrivateKey
) -> None:
    """Outputs signed by a key revoked meanwhile (by any process) are never stored or audited."""
    await store.insert_key(key_record("k1"))
    original = request(1)
    await store.insert_signing_request(original)
    signed = with_outputs(original, signed_outputs(key, original), ring="codesign", kid="k1", now=9)
    revoked = key_record("k1").with_state(KeyState.REVOKED, 200, revoke_reason="x")
    await store.update_keys([KeyUpdate(record=revoked, expected=KeyState.ACTIVE)])
    with pytest.raises(KeysNotActive):
        await store.update_signing_request(
            signed,
            expected_version=1,
            audit=[entry("signing.sign", 1)],
            require_active=[KeyId("k1")],
        )
    assert await store.get_signing_request("sr_1") == original
    assert await store.audit_records() == []
