"""``signer audit prune``: cut at a signed checkpoint, both halves verify, nothing lost.

A real audit writer on a real SQLite file signs checkpoints with a real P-256 key; the archive
and the store are then checked the way an auditor would, with ``verify_export``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jwks.algorithms import Alg
from jwks.jwk import Jwk, public_jwk
from signer.audit.chain import PRUNE_ACTION, format_time
from signer.audit.prune import PruneRefused, prune, read_lines
from signer.audit.verify import verify_export, verify_stored
from signer.audit.writer import AuditWriter
from signer.store.base import NO_ANCHOR, AuditAnchor
from signer.store.sqlite import SqliteStore
from tests.fakes import MovingClock

T0 = 1_790_000_000.0
KEY = ec.generate_private_key(ec.SECP256R1())


async def es256(payload: bytes) -> bytes:
    """What the HSM's audit key returns: ES256 r || s."""
    r, s = decode_dss_signature(KEY.sign(payload, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def ec_jwk(key: ec.EllipticCurvePublicKey, alg: Alg) -> Jwk:
    """The JWKS entry ``GET /v1/audit/keys`` would serve for ``key``, with kid ``audit-k``."""
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return Jwk(**public_jwk(alg, spki), kid="audit-k")


def audit_keys() -> list[Jwk]:
    return [ec_jwk(KEY.public_key(), Alg.ES256)]


class Log:
    """A store with a writer that signs checkpoints; ``sign(n)`` commits n records and signs."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = MovingClock(T0)
        self.store = SqliteStore(tmp_path / "state.db")
        self.writer = AuditWriter(
            self.store, clock=self.clock, checkpoint_kid="audit-k", checkpoint_sign=es256
        )

    async def sign(self, n: int) -> int:
        """Commit ``n`` records, then a checkpoint over them; the seq the checkpoint names."""
        for i in range(n):
            await self.writer.record(
                actor="idp", action="jwt.sign", target="ring/default", details={"n": i}
            )
        self.clock.now += 60
        checkpoint = await self.writer.checkpoint()
        assert checkpoint is not None
        named = checkpoint.details["seq"]
        assert isinstance(named, int)
        return named

    async def verify_store(self) -> str:
        anchor = await self.store.audit_anchor()
        lines = await self.store.audit_raw()
        report = verify_export(lines, audit_keys(), after=anchor.seq, prev=anchor.hash)
        assert report.ok, report.summary
        return report.summary


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    log = Log(tmp_path)
    await log.writer.start()
    yield log
    await log.writer.aclose()
    await log.store.aclose()


async def test_both_halves_verify_and_the_store_chains_on(log: Log, tmp_path: Path) -> None:
    await log.sign(5)
    named = await log.sign(5)
    archive = tmp_path / "archive-1.jsonl"

    said = await prune(log.store, audit_keys(), archive, clock=log.clock)

    anchor = await log.store.audit_anchor()
    assert anchor.seq == named
    archived = read_lines(archive)
    assert [json.loads(line)["seq"] for line in archived] == list(range(1, named + 2))
    report = verify_export(archived, audit_keys())
    assert report.ok
    assert f"covering seq 1..{named}" in report.summary
    stored = await log.store.audit_records()
    assert stored[0].seq == named + 1  # the checkpoint: in the archive and in the store
    assert stored[-1].action == PRUNE_ACTION
    assert f"sha256 {stored[-1].details['archive_sha256']}" in said
    assert f"vouching for seq {named}" in await log.verify_store()
    await log.sign(3)  # the writer's own head was pruned: it still signs what follows
    assert f"covering seq {named + 1}.." in await log.verify_store()


async def test_a_second_prune_starts_where_the_first_ended(log: Log, tmp_path: Path) -> None:
    first = await log.sign(4)
    await prune(log.store, audit_keys(), tmp_path / "a1.jsonl", clock=log.clock)
    second = await log.sign(4)
    await prune(log.store, audit_keys(), tmp_path / "a2.jsonl", clock=log.clock)

    archived = read_lines(tmp_path / "a2.jsonl")
    assert json.loads(archived[0])["seq"] == first + 1
    previous = AuditAnchor(
        seq=first, hash=json.loads(read_lines(tmp_path / "a1.jsonl")[first - 1])["hash"]
    )
    report = verify_export(archived, audit_keys(), after=previous.seq, prev=previous.hash)
    assert report.ok, report.summary
    assert (await log.store.audit_anchor()).seq == second
    await log.verify_store()


async def test_through_and_older_than_choose_an_earlier_checkpoint(
    log: Log, tmp_path: Path
) -> None:
    first = await log.sign(3)
    first_signed = format_time(log.clock())
    second = await log.sign(3)
    assert second > first

    said = await prune(
        log.store, audit_keys(), tmp_path / "a.jsonl", clock=log.clock, through=second - 1
    )
    assert (await log.store.audit_anchor()).seq == first
    assert f"after seq {first} " in said
    nothing = await prune(
        log.store, audit_keys(), tmp_path / "b.jsonl", clock=log.clock, signed_before=first_signed
    )
    assert nothing.startswith("nothing to prune")
    assert not (tmp_path / "b.jsonl").exists()


async def test_without_a_checkpoint_after_the_anchor_nothing_is_pruned(
    log: Log, tmp_path: Path
) -> None:
    for i in range(3):
        await log.writer.record(actor="idp", action="jwt.sign", target="r", details={"n": i})
    said = await prune(log.store, audit_keys(), tmp_path / "a.jsonl", clock=log.clock)
    assert said.startswith("nothing to prune")
    assert await log.store.audit_anchor() == NO_ANCHOR


async def test_a_log_that_does_not_verify_is_not_pruned(log: Log, tmp_path: Path) -> None:
    await log.sign(4)
    await log.writer.aclose()
    await log.store.aclose()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute(
            "UPDATE audit SET record = replace(record, '\"n\":1', '\"n\":7') WHERE seq = 2"
        )
    store = SqliteStore(tmp_path / "state.db")
    try:
        with pytest.raises(
            PruneRefused, match="does not verify, so nothing is pruned: FAIL: record seq 2"
        ):
            await prune(store, audit_keys(), tmp_path / "a.jsonl", clock=lambda: T0)
        assert not (tmp_path / "a.jsonl").exists()
        assert await store.audit_anchor() == NO_ANCHOR
        assert len(await store.audit_raw()) == 5
    finally:
        await store.aclose()


async def test_no_keys_or_an_existing_archive_prunes_nothing(log: Log, tmp_path: Path) -> None:
    await log.sign(4)
    with pytest.raises(PruneRefused, match="no ES256 audit key"):
        await prune(log.store, [], tmp_path / "a.jsonl", clock=log.clock)
    existing = tmp_path / "a.jsonl"
    existing.write_text("mine\n", encoding="utf-8")
    with pytest.raises(PruneRefused, match="already exists"):
        await prune(log.store, audit_keys(), existing, clock=log.clock)
    assert existing.read_text(encoding="utf-8") == "mine\n"
    assert await log.store.audit_anchor() == NO_ANCHOR


async def test_an_anchor_no_prune_made_fails_verification(log: Log, tmp_path: Path) -> None:
    """Records deleted from the store and an anchor written by hand look like a prune to the
    chain; a real prune also leaves the checkpoint naming the cut and its audit.prune record."""
    await log.sign(6)
    lines = await log.store.audit_raw()
    cut = json.loads(lines[2])  # seq 3: no checkpoint names it
    await log.writer.aclose()
    await log.store.aclose()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("DELETE FROM audit WHERE seq <= 3")
        anchor = json.dumps({"seq": 3, "hash": cut["hash"]})
        conn.execute("INSERT INTO meta (key, value) VALUES ('audit.anchor', ?)", (anchor,))
    store = SqliteStore(tmp_path / "state.db")
    try:
        stored_anchor, kept = await store.audit_export()
        assert verify_export(kept, audit_keys(), after=3, prev=cut["hash"]).ok  # the chain holds
        report = verify_stored(kept, audit_keys(), anchor=stored_anchor)
        assert not report.ok
        assert "no checkpoint naming it is stored" in report.summary
        with pytest.raises(PruneRefused, match="removed without signer audit prune"):
            await prune(store, audit_keys(), tmp_path / "a.jsonl", clock=lambda: T0)
    finally:
        await store.aclose()


async def test_an_archive_written_in_short_pieces_is_whole(
    log: Log, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write() may take part of the bytes (a full disk, a file over 2 GiB): all must land."""
    await log.sign(8)
    real_write = os.write
    monkeypatch.setattr("signer.audit.prune.os.write", lambda fd, data: real_write(fd, data[:50]))
    archive = tmp_path / "a.jsonl"
    await prune(log.store, audit_keys(), archive, clock=log.clock)
    assert [json.loads(line)["seq"] for line in read_lines(archive)] == list(range(1, 10))


async def test_keys_that_cannot_sign_checkpoints_prune_nothing(log: Log, tmp_path: Path) -> None:
    await log.sign(3)
    p384 = ec_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), Alg.ES384)
    with pytest.raises(PruneRefused, match="no ES256 audit key"):
        await prune(log.store, [p384], tmp_path / "a.jsonl", clock=log.clock)
    assert await log.store.audit_anchor() == NO_ANCHOR
