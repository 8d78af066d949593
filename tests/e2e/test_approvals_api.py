"""Quorum-approved key operations on a live signer, through the API and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator

import aiohttp
import pytest

from tests.e2e.server import Setup, SignerProcess, run_cli

THIRD = "sgn_e2e-third-custodian"


@pytest.fixture
def custodians(fresh_setup: Setup) -> Iterator[SignerProcess]:
    """A signer whose key-custodians group has a third member, so two approvals can race."""
    text = fresh_setup.config.read_text().replace(
        'members = ["approver1", "approver2"]', 'members = ["approver1", "approver2", "approver3"]'
    )
    text += (
        "\n[[principals]]\n"
        'name = "approver3"\n'
        f'token_sha256 = "{hashlib.sha256(THIRD.encode()).hexdigest()}"\n'
        'permissions = ["sign:approve:*"]\n'
    )
    fresh_setup.config.write_text(text)
    fresh_setup.tokens["approver3"] = THIRD
    server = SignerProcess.start(fresh_setup)
    yield server
    server.stop()


def revoked_standby(server: SignerProcess) -> str:
    admin = server.setup.tokens["admin"]
    ring = server.request("GET", "/v1/rings/default", token=admin).json()
    kid: str = next(k["kid"] for k in ring["keys"] if k["state"] == "pending")
    response = server.request("POST", f"/v1/keys/{kid}/revoke", body={"reason": "x"}, token=admin)
    assert response.status == 200
    return kid


def request_destroy(server: SignerProcess, kid: str) -> str:
    response = server.request(
        "POST",
        f"/v1/keys/{kid}/destroy",
        body={"reason": "decommission"},
        token=server.setup.tokens["admin"],
    )
    assert response.status == 202, response.body
    approval = response.json()["approval"]
    assert approval["state"] == "pending"
    assert approval["policy"]["required"] == 2
    approval_id: str = approval["id"]
    return approval_id


def vote(
    server: SignerProcess, approval_id: str, role: str, verb: str = "approve", comment: str = "ok"
) -> tuple[int, dict[str, object]]:
    response = server.request(
        "POST",
        f"/v1/approvals/{approval_id}/{verb}",
        body={"comment": comment},
        token=server.setup.tokens[role],
    )
    body: dict[str, object] = response.json()
    return response.status, body


def key_state(server: SignerProcess, kid: str) -> str:
    ring = server.request("GET", "/v1/rings/default", token=server.setup.tokens["admin"]).json()
    state: str = next(k["state"] for k in ring["keys"] if k["kid"] == kid)
    return state


def test_destroy_runs_once_quorum_is_reached(custodians: SignerProcess) -> None:
    kid = revoked_standby(custodians)
    approval_id = request_destroy(custodians, kid)
    status, first = vote(custodians, approval_id, "approver1")
    assert (status, first["state"], first["remaining"]) == (200, "pending", 1)
    status, again = vote(custodians, approval_id, "approver1")  # counts once
    assert (status, again["remaining"]) == (200, 1)
    assert key_state(custodians, kid) == "revoked"
    status, done = vote(custodians, approval_id, "approver2")
    assert (status, done["state"]) == (200, "executed")
    assert key_state(custodians, kid) == "destroyed"
    rows = json.loads(
        run_cli("keys", "list", "--config", str(custodians.setup.config), "--json").stdout
    )
    assert [r["state"] for r in rows if r["kid"] == kid] == ["destroyed"]
    assert not [r for r in rows if r["state"] == "orphan"]  # gone from the token too


def test_requester_and_outsiders_cannot_vote(custodians: SignerProcess) -> None:
    approval_id = request_destroy(custodians, revoked_standby(custodians))
    for role, code in (("admin", "self_approval"), ("issuer", "not_an_approver")):
        status, body = vote(custodians, approval_id, role)
        assert (status, body["code"]) == (403, code)


def test_an_outsider_is_refused_before_its_body_is_read(custodians: SignerProcess) -> None:
    """Permission before media type and JSON (docs/api.md): a bad body from someone who may
    not vote is the same audited 403."""
    approval_id = request_destroy(custodians, revoked_standby(custodians))
    for raw, content_type in ((b"[]", "application/json"), (b"ok", "text/plain")):
        response = custodians.request(
            "POST",
            f"/v1/approvals/{approval_id}/approve",
            raw=raw,
            token=custodians.setup.tokens["issuer"],
            headers={"Content-Type": content_type},
        )
        assert (response.status, response.json()["code"]) == (403, "not_an_approver")


def test_deny_wins_and_the_key_stays(custodians: SignerProcess) -> None:
    kid = revoked_standby(custodians)
    approval_id = request_destroy(custodians, kid)
    vote(custodians, approval_id, "approver1")
    status, denied = vote(custodians, approval_id, "approver2", "deny", "wrong key")
    assert (status, denied["state"]) == (200, "denied")
    status, late = vote(custodians, approval_id, "approver3")
    assert (status, late["code"]) == (409, "already_decided")
    assert key_state(custodians, kid) == "revoked"


async def test_racing_final_approvals_destroy_once(custodians: SignerProcess) -> None:
    kid = revoked_standby(custodians)
    approval_id = request_destroy(custodians, kid)
    vote(custodians, approval_id, "approver1")
    url = f"{custodians.setup.url}/v1/approvals/{approval_id}/approve"
    async with aiohttp.ClientSession() as session:

        async def approve(role: str) -> int:
            async with session.post(
                url,
                json={"comment": "race"},
                headers={"Authorization": f"Bearer {custodians.setup.tokens[role]}"},
            ) as response:
                return response.status

        statuses = sorted(await asyncio.gather(approve("approver2"), approve("approver3")))
    assert statuses[0] == 200
    assert statuses[1] in (200, 409)
    records = custodians.request(
        "GET", "/v1/audit?limit=1000", token=custodians.setup.tokens["auditor"]
    ).json()["records"]
    executed = [
        r
        for r in records
        if r["action"] == "approval.execute" and r["target"] == f"approval/{approval_id}"
    ]
    destroyed = [r for r in records if r["action"] == "key.destroy" and r["details"]["kid"] == kid]
    assert len(executed) == 1
    assert len(destroyed) == 1


def test_reinstate_backs_a_revoked_key_into_the_jwks(custodians: SignerProcess) -> None:
    admin = custodians.setup.tokens["admin"]
    active = custodians.request("GET", "/v1/rings/default", token=admin).json()["active_kid"]
    custodians.request("POST", f"/v1/keys/{active}/revoke", body={"reason": "mistake"}, token=admin)
    jwks = custodians.get_json("/.well-known/jwks.json")
    assert active not in [k["kid"] for k in jwks["keys"]]
    response = custodians.request(
        "POST", f"/v1/keys/{active}/reinstate", body={"reason": "backout"}, token=admin
    )
    approval_id = response.json()["approval"]["id"]
    vote(custodians, approval_id, "approver1")
    vote(custodians, approval_id, "approver2")
    assert key_state(custodians, active) in ("draining", "retired")


def test_cli_lists_and_votes(custodians: SignerProcess) -> None:
    approval_id = request_destroy(custodians, revoked_standby(custodians))
    credentials = str(custodians.setup.directory / "credentials.json")
    listing = run_cli("approvals", "list", "--state", "pending", "--credentials", credentials)
    assert approval_id in listing.stdout
    voted = run_cli(
        "approvals", "approve", approval_id, "--comment", "cli", "--credentials", credentials
    )
    assert f"{approval_id} is pending (1/2 approvals)" in voted.stdout
    refused = run_cli(
        "approvals",
        "deny",
        approval_id,
        "--credentials",
        credentials,
        "--role",
        "approver2",
        check=False,
    )
    assert refused.returncode == 1
    assert "invalid_comment" in refused.stderr
