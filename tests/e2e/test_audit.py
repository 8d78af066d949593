"""The audit log of a live signer: completeness under SIGKILL, tamper detection, checkpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import aiohttp
import jwt
import pytest

from tests.e2e.server import Setup, SignerProcess, run_cli


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def export(setup: Setup) -> list[dict[str, object]]:
    out = run_cli("audit", "export", "--config", str(setup.config)).stdout
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def audited(fresh_setup: Setup) -> Setup:
    """A setup with some history: tokens, a revocation, then a clean stop."""
    sink = fresh_setup.directory / "audit.jsonl"
    with fresh_setup.config.open("a") as config:
        config.write(f'\n[audit]\nsink = "{sink}"\n')
    server = SignerProcess.start(fresh_setup)
    issuer = fresh_setup.tokens["issuer"]
    for i in range(5):
        server.request(
            "POST", "/v1/rings/default/jwt", body={"claims": {"sub": f"u{i}"}}, token=issuer
        )
    kid = server.request("GET", "/v1/rings/default", token=fresh_setup.tokens["admin"]).json()[
        "keys"
    ][1]["kid"]
    server.request(
        "POST",
        f"/v1/keys/{kid}/revoke",
        body={"reason": "drill"},
        token=fresh_setup.tokens["admin"],
    )
    server.request("POST", "/v1/rings/default/jwt", body={"claims": {}}, token="sgn_wrong")
    assert server.stop() == 0
    return fresh_setup


def test_each_token_of_a_batch_has_its_own_record_in_order(fresh_setup: Setup) -> None:
    server = SignerProcess.start(fresh_setup)
    body = {"requests": [{"claims": {"sub": f"b{i}"}} for i in range(3)]}
    response = server.request(
        "POST", "/v1/rings/default/jwt:batch", body=body, token=fresh_setup.tokens["issuer"]
    )
    assert server.stop() == 0
    assert response.status == 200, response.body
    claims = [
        jwt.decode(item["jwt"], options={"verify_signature": False})
        for item in response.json()["tokens"]
    ]

    signs = [r["details"] for r in export(fresh_setup) if r["action"] == "jwt.sign"]

    assert [d["jti_sha256"] for d in signs] == [sha256(c["jti"]) for c in claims]  # type: ignore[index]
    assert [d["sub_sha256"] for d in signs] == [sha256(f"b{i}") for i in range(3)]  # type: ignore[index]


def test_every_key_event_signature_and_refusal_is_recorded(audited: Setup) -> None:
    records = export(audited)
    actions = [r["action"] for r in records]
    assert actions.count("jwt.sign") == 5
    assert actions.count("key.generate") >= 4  # audit key, first key, standby, new standby
    assert "key.revoke" in actions
    assert "authz.deny" in actions
    assert actions[-1] == "audit.checkpoint"  # a clean stop signs the head
    sign = next(r for r in records if r["action"] == "jwt.sign")
    details = sign["details"]
    assert isinstance(details, dict)
    assert set(details) >= {"ring", "kid", "exp", "jti_sha256", "sub_sha256"}
    revoke = next(r for r in records if r["action"] == "key.revoke")
    assert revoke["actor"] == "admin"
    assert revoke["details"]["reason"] == "revoked: drill"  # type: ignore[index]
    # Nothing secret: no token, no PIN, no bearer credential anywhere in the log.
    text = json.dumps(records)
    assert all(token not in text for token in audited.tokens.values())
    assert (audited.directory / "hsm-pin").read_text().strip() not in text


def test_sink_streams_the_same_records(audited: Setup) -> None:
    sink = [
        json.loads(line) for line in (audited.directory / "audit.jsonl").read_text().splitlines()
    ]
    assert sink == export(audited)


def test_verify_passes_on_the_untouched_log(audited: Setup) -> None:
    result = run_cli("audit", "verify", "--config", str(audited.config))
    assert result.returncode == 0
    assert "OK:" in result.stdout
    assert "signed checkpoints verify" in result.stdout


def test_an_export_verifies_offline_with_only_the_public_key(
    audited: Setup, tmp_path: Path
) -> None:
    exported = tmp_path / "audit.jsonl"
    run_cli("audit", "export", "--config", str(audited.config), "--output", str(exported))
    server = SignerProcess.start(audited)
    try:
        keys = server.request("GET", "/v1/audit/keys").body
    finally:
        server.stop()
    (tmp_path / "keys.json").write_bytes(keys)
    result = run_cli(
        "audit", "verify", "--file", str(exported), "--keys", str(tmp_path / "keys.json")
    )
    assert result.returncode == 0, result.stdout
    assert "signed checkpoints verify" in result.stdout


def test_an_export_after_a_record_verifies_offline_from_that_record(
    audited: Setup, tmp_path: Path
) -> None:
    """``export --after N`` links to record N: ``verify --after N --prev <its hash>``."""
    exported = tmp_path / "tail.jsonl"
    run_cli(
        "audit",
        "export",
        "--config",
        str(audited.config),
        "--after",
        "3",
        "--output",
        str(exported),
    )
    server = SignerProcess.start(audited)
    try:
        (tmp_path / "keys.json").write_bytes(server.request("GET", "/v1/audit/keys").body)
    finally:
        server.stop()
    verify = ["audit", "verify", "--file", str(exported), "--keys", str(tmp_path / "keys.json")]
    prev = str(stored(audited, 3)["hash"])

    result = run_cli(*verify, "--after", "3", "--prev", prev)
    assert result.returncode == 0, result.stdout
    assert "signed checkpoints verify, covering seq 4.." in result.stdout

    wrong = run_cli(*verify, "--after", "3", "--prev", "1" * 64, check=False)
    assert wrong.returncode == 1
    assert "FAIL: record seq 4 (line 1)" in wrong.stdout
    unanchored = run_cli(*verify, check=False)
    assert unanchored.returncode == 1
    assert "FAIL: record seq 4 (line 1)" in unanchored.stdout


@pytest.mark.parametrize(
    "extra",
    [
        ["--after", "3"],
        ["--prev", "1" * 64],
        ["--after", "x", "--prev", "1" * 64],
        ["--after", "3", "--prev", "0" * 64],
        ["--after", "3", "--prev", "ABC"],
    ],
)
def test_after_and_prev_go_together_and_are_checked(
    audited: Setup, tmp_path: Path, extra: list[str]
) -> None:
    exported = tmp_path / "audit.jsonl"
    exported.write_text("", encoding="utf-8")
    result = run_cli("audit", "verify", "--file", str(exported), *extra, check=False)
    assert result.returncode == 2
    assert "--after" in result.stderr or "--prev" in result.stderr


def tamper(setup: Setup, statements: list[tuple[str, tuple[object, ...]]]) -> str:
    """Apply SQL to a copy of the store, verify it, restore; return verify's output."""
    db = setup.directory / "state.db"
    backup = setup.directory / "state.db.orig"
    shutil.copy(db, backup)
    try:
        with sqlite3.connect(db) as conn:
            for sql, params in statements:
                conn.execute(sql, params)
        result = run_cli("audit", "verify", "--config", str(setup.config), check=False)
        assert result.returncode == 1, result.stdout
        return result.stdout
    finally:
        shutil.move(backup, db)


def stored(setup: Setup, seq: int) -> dict[str, object]:
    with sqlite3.connect(setup.directory / "state.db") as conn:
        (text,) = conn.execute("SELECT record FROM audit WHERE seq = ?", (seq,)).fetchone()
    record: dict[str, object] = json.loads(text)
    return record


@pytest.mark.parametrize("field", ["time", "actor", "action", "target", "outcome", "details"])
def test_a_changed_record_is_named(audited: Setup, field: str) -> None:
    record = stored(audited, 5)
    record[field] = (
        {"x": 1} if field == "details" else ("failure" if field == "outcome" else "forged")
    )
    out = tamper(audited, [("UPDATE audit SET record = ? WHERE seq = 5", (json.dumps(record),))])
    assert "record seq 5" in out


def test_a_removed_record_is_named(audited: Setup) -> None:
    out = tamper(audited, [("DELETE FROM audit WHERE seq = 4", ())])
    assert "record seq 5" in out or "seq 4" in out
    assert "removed" in out


def test_reordered_records_are_named(audited: Setup) -> None:
    four, five = stored(audited, 4), stored(audited, 5)
    out = tamper(
        audited,
        [
            ("UPDATE audit SET record = ? WHERE seq = 4", (json.dumps(five),)),
            ("UPDATE audit SET record = ? WHERE seq = 5", (json.dumps(four),)),
        ],
    )
    assert "FAIL: record seq" in out


def test_an_inserted_record_is_named(audited: Setup) -> None:
    """A forged record with a correct hash of its own still breaks the next link."""
    from signer.audit.chain import AuditEntry, AuditRecord, link  # noqa: PLC0415

    head = AuditRecord.from_json(stored(audited, 3))
    forged = link(
        AuditEntry(
            time=str(head.time),
            actor="mallory",
            action="jwt.sign",
            target="ring/default/x",
            outcome="success",
            details={},
        ),
        seq=4,
        prev=head.hash,
    )
    with sqlite3.connect(audited.directory / "state.db") as conn:
        rows = conn.execute(
            "SELECT seq, hash, record FROM audit WHERE seq >= 4 ORDER BY seq DESC"
        ).fetchall()
    statements: list[tuple[str, tuple[object, ...]]] = [
        ("UPDATE audit SET seq = ? WHERE seq = ?", (seq + 1, seq)) for seq, _, _ in rows
    ]
    statements.append(
        (
            "INSERT INTO audit (seq, hash, record) VALUES (4, ?, ?)",
            (forged.hash, json.dumps(forged.to_json())),
        )
    )
    out = tamper(audited, statements)
    assert "FAIL: record seq" in out


def test_a_rewritten_log_fails_its_signed_checkpoint(audited: Setup) -> None:
    """Recomputing every hash after a change fools the chain, not the HSM-signed checkpoint."""
    from signer.audit.chain import AuditRecord, link  # noqa: PLC0415

    with sqlite3.connect(audited.directory / "state.db") as conn:
        texts = [row[0] for row in conn.execute("SELECT record FROM audit ORDER BY seq")]
    records = [AuditRecord.from_json(json.loads(t)) for t in texts]
    rewritten = []
    prev = "0" * 64
    for record in records:
        actor = "mallory" if record.seq == 2 else record.actor
        entry_fields = {
            "time": record.time,
            "actor": actor,
            "action": record.action,
            "target": record.target,
            "outcome": record.outcome,
            "details": record.details,
        }
        from signer.audit.chain import AuditEntry  # noqa: PLC0415

        new = link(AuditEntry(**entry_fields), seq=record.seq, prev=prev)  # type: ignore[arg-type]
        rewritten.append(new)
        prev = new.hash
    out = tamper(
        audited,
        [
            (
                "UPDATE audit SET hash = ?, record = ? WHERE seq = ?",
                (r.hash, json.dumps(r.to_json()), r.seq),
            )
            for r in rewritten
        ],
    )
    assert "FAIL: record seq" in out


async def test_every_token_a_client_received_is_audited_after_sigkill(fresh_setup: Setup) -> None:
    server = SignerProcess.start(fresh_setup)
    received: list[str] = []
    stop = time.monotonic() + 2.0

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            try:
                async with session.post(
                    f"{fresh_setup.url}/v1/rings/default/jwt",
                    json={"claims": {"sub": "load"}},
                    headers={"Authorization": f"Bearer {fresh_setup.tokens['issuer']}"},
                ) as response:
                    if response.status == 200:
                        received.append((await response.json())["jwt"])
            except aiohttp.ClientError:
                return  # the server is gone

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = [asyncio.create_task(client(session)) for _ in range(32)]
        await asyncio.sleep(1.5)
        server.kill()  # mid-load: requests are in flight
        await asyncio.gather(*clients)
    assert len(received) > 50
    records = export(fresh_setup)
    audited_jtis = {
        r["details"]["jti_sha256"]  # type: ignore[index]
        for r in records
        if r["action"] == "jwt.sign"
    }
    jtis = [jwt.decode(t, options={"verify_signature": False})["jti"] for t in received]
    missing = [j for j in jtis if sha256(j) not in audited_jtis]
    assert missing == []
    assert len(audited_jtis) >= len(received)
    assert run_cli("audit", "verify", "--config", str(fresh_setup.config)).returncode == 0


def test_prune_beside_a_serving_signer_leaves_two_verifiable_halves(
    audited: Setup, tmp_path: Path
) -> None:
    """``audit prune`` while the signer serves: the archive verifies offline, the store verifies
    from its anchor, and the signer's checkpoints go on covering what it writes next."""
    before = export(audited)
    server = SignerProcess.start(audited)
    issuer = audited.tokens["issuer"]
    try:
        archive = tmp_path / "archive.jsonl"
        pruned = run_cli(
            "audit", "prune", "--config", str(audited.config), "--archive", str(archive)
        )
        assert pruned.stdout.startswith("archived seq 1..")
        (tmp_path / "keys.json").write_bytes(server.request("GET", "/v1/audit/keys").body)
        for i in range(3):
            server.request(
                "POST", "/v1/rings/default/jwt", body={"claims": {"sub": f"v{i}"}}, token=issuer
            )
    finally:
        assert server.stop() == 0  # a checkpoint over the new records, at shutdown
    archived = [json.loads(line) for line in archive.read_text(encoding="utf-8").splitlines()]
    assert archived == before[: len(archived)]
    offline = run_cli(
        "audit", "verify", "--file", str(archive), "--keys", str(tmp_path / "keys.json")
    )
    assert "signed checkpoints verify, covering seq 1.." in offline.stdout
    live = run_cli("audit", "verify", "--config", str(audited.config))
    assert live.returncode == 0, live.stdout
    kept = export(audited)
    anchor = archived[-1]["details"]
    assert isinstance(anchor, dict)
    assert kept[0]["seq"] == anchor["seq"] + 1
    assert kept[0]["prev"] == anchor["hash"]
    assert [r["action"] for r in kept].count("audit.prune") == 1
    assert kept[-1]["action"] == "audit.checkpoint"
    assert f"covering seq {anchor['seq'] + 1}..{kept[-2]['seq']}" in live.stdout


def test_prune_refuses_a_log_that_does_not_verify(audited: Setup, tmp_path: Path) -> None:
    changed = stored(audited, 3) | {"actor": "eve"}
    with sqlite3.connect(audited.directory / "state.db") as conn:
        conn.execute("UPDATE audit SET record = ? WHERE seq = 3", (json.dumps(changed),))
    archive = tmp_path / "archive.jsonl"
    result = run_cli(
        "audit", "prune", "--config", str(audited.config), "--archive", str(archive), check=False
    )
    assert result.returncode == 2
    assert "does not verify, so nothing is pruned: FAIL: record seq 3" in result.stderr
    assert not archive.exists()
