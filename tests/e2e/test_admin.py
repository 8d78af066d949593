"""Key administration on a live signer: ring listing, safe rotation, the kill-switch, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jwt
import pytest

from tests.e2e.server import Setup, SignerProcess, run_cli

SIGN = "/v1/rings/default/jwt"


@pytest.fixture
def own_signer(fresh_setup: Setup) -> Iterator[SignerProcess]:
    """A signer of its own: these tests rotate and revoke."""
    server = SignerProcess.start(fresh_setup)
    yield server
    server.stop()


def sign(server: SignerProcess) -> str:
    response = server.request(
        "POST", SIGN, body={"claims": {"sub": "a"}}, token=server.setup.tokens["issuer"]
    )
    assert response.status == 200, response.body
    kid: str = response.json()["kid"]
    return kid


def published(server: SignerProcess) -> list[str]:
    return [k["kid"] for k in server.get_json("/.well-known/jwks.json")["keys"]]


def test_admin_lists_rings_with_keys_and_timestamps(own_signer: SignerProcess) -> None:
    admin = own_signer.setup.tokens["admin"]
    listing = own_signer.request("GET", "/v1/rings", token=admin).json()
    assert [r["name"] for r in listing["rings"]] == ["default", "codesign"]  # as signer init
    ring = listing["rings"][0]
    assert ring["policy"]["prepublish"] == 2 * 86400
    active, pending = ring["keys"]
    assert (active["state"], pending["state"]) == ("active", "pending")
    assert ring["active_kid"] == active["kid"]
    assert active["activated_at"] >= active["published_at"]
    assert pending["activated_at"] is None
    assert ring["next_transition_at"] == active["activated_at"] + 30 * 86400
    detail = own_signer.request("GET", "/v1/rings/default", token=admin).json()
    assert detail == ring


@pytest.mark.parametrize("role", ["issuer", "ci", "approver1", "auditor"])
def test_only_key_admins_see_rings(own_signer: SignerProcess, role: str) -> None:
    token = own_signer.setup.tokens[role]
    assert own_signer.request("GET", "/v1/rings", token=token).status == 403
    assert own_signer.request("GET", "/v1/rings/default", token=token).status == 403
    response = own_signer.request("POST", "/v1/rings/default/rotate", body={}, token=token)
    assert response.status == 403
    assert own_signer.request("GET", "/v1/rings").status == 401


def test_a_rings_keys_show_the_watermark_signing_raised(signer: SignerProcess) -> None:
    """exp_watermark is what the store holds, not the copy the ring view was built from."""
    issued = signer.request(
        "POST", SIGN, body={"claims": {}, "ttl": 3000}, token=signer.setup.tokens["issuer"]
    ).json()
    admin = signer.setup.tokens["admin"]
    for path in ("/v1/rings/default", "/v1/rings"):
        answer = signer.request("GET", path, token=admin).json()
        ring = (
            answer
            if path.endswith("default")
            else next(r for r in answer["rings"] if r["name"] == "default")
        )
        (key,) = [k for k in ring["keys"] if k["kid"] == issued["kid"]]
        assert key["exp_watermark"] >= issued["exp"]


def test_safe_rotation_waits_for_prepublication(own_signer: SignerProcess) -> None:
    """Right after start the standby is new; the rotation is accepted for prepublish later."""
    admin = own_signer.setup.tokens["admin"]
    before = sign(own_signer)
    response = own_signer.request("POST", "/v1/rings/default/rotate", body={}, token=admin)
    assert response.status == 202
    accepted = response.json()
    assert accepted["activates_at"] - accepted["requested_at"] >= 2 * 86400 - 5
    assert sign(own_signer) == before


def test_immediate_rotation_is_refused_unless_allowed(own_signer: SignerProcess) -> None:
    response = own_signer.request(
        "POST",
        "/v1/rings/default/rotate",
        body={"immediate": True},
        token=own_signer.setup.tokens["admin"],
    )
    assert response.status == 400
    assert response.json()["field"] == "immediate"


def test_a_rotation_reason_is_held_to_the_revocation_limit(own_signer: SignerProcess) -> None:
    response = own_signer.request(
        "POST",
        "/v1/rings/default/rotate",
        body={"reason": "x" * 501},
        token=own_signer.setup.tokens["admin"],
    )
    assert response.status == 400
    assert response.json()["field"] == "reason"


def test_revoke_cuts_the_key_off_at_once(own_signer: SignerProcess) -> None:
    admin = own_signer.setup.tokens["admin"]
    old = sign(own_signer)
    assert old in published(own_signer)
    response = own_signer.request(
        "POST", f"/v1/keys/{old}/revoke", body={"reason": "laptop stolen"}, token=admin
    )
    assert response.status == 200, response.body
    answer = response.json()
    assert answer["key"]["state"] == "revoked"
    assert answer["key"]["revoke_reason"] == "laptop stolen"
    assert answer["active_kid"] != old
    assert old not in published(own_signer)
    assert sign(own_signer) == answer["active_kid"]
    # The new active key verifies against the JWKS; a new standby is already published.
    assert len(published(own_signer)) == 2
    # The runbook's check (rotation.md): keys list shows the state and the reason.
    config = str(own_signer.setup.config)
    listed = run_cli("keys", "list", "--config", config, check=False).stdout
    (line,) = [row for row in listed.splitlines() if old in row]
    assert "revoked" in line
    assert line.endswith('(revoked: "laptop stolen")')  # quoted: a reason is one line
    rows = json.loads(run_cli("keys", "list", "--config", config, "--json", check=False).stdout)
    assert next(r for r in rows if r["kid"] == old)["revoke_reason"] == "laptop stolen"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_field"),
        ({"reason": ""}, 400, "invalid_field"),
        ({"reason": "x", "force": True}, 400, "unknown_field"),
        ({"reason": 5}, 400, "invalid_field"),
    ],
)
def test_revoke_needs_a_reason(
    own_signer: SignerProcess, body: object, status: int, code: str
) -> None:
    kid = sign(own_signer)
    response = own_signer.request(
        "POST", f"/v1/keys/{kid}/revoke", body=body, token=own_signer.setup.tokens["admin"]
    )
    assert (response.status, response.json()["code"]) == (status, code)
    assert kid in published(own_signer)  # nothing half-applied


def test_revoke_unknown_kid_is_404_and_non_admin_is_403(own_signer: SignerProcess) -> None:
    kid = sign(own_signer)
    response = own_signer.request(
        "POST", "/v1/keys/nope/revoke", body={"reason": "x"}, token=own_signer.setup.tokens["admin"]
    )
    assert response.json()["code"] == "unknown_key"
    response = own_signer.request(
        "POST",
        f"/v1/keys/{kid}/revoke",
        body={"reason": "x"},
        token=own_signer.setup.tokens["issuer"],
    )
    assert response.status == 403
    assert kid in published(own_signer)


def test_cli_rotates_and_revokes_over_the_api(own_signer: SignerProcess) -> None:
    credentials = str(own_signer.setup.directory / "credentials.json")
    rotated = run_cli("keys", "rotate", "default", "--credentials", credentials)
    assert "rotation of ring default accepted" in rotated.stdout
    old = sign(own_signer)
    revoked = run_cli("keys", "revoke", old, "--reason", "drill", "--credentials", credentials)
    assert f"revoked {old}" in revoked.stdout
    assert old not in published(own_signer)
    token = own_signer.request(
        "POST", SIGN, body={"claims": {}}, token=own_signer.setup.tokens["issuer"]
    ).json()["jwt"]
    assert jwt.get_unverified_header(token)["kid"] != old
    refused = run_cli(
        "keys", "revoke", old, "--reason", "again", "--credentials", credentials, check=False
    )
    assert refused.returncode == 1
    assert "already revoked" in refused.stderr
    wrong_role = run_cli(
        "keys", "rotate", "default", "--credentials", credentials, "--role", "issuer", check=False
    )
    assert wrong_role.returncode == 1
    assert "forbidden" in wrong_role.stderr
