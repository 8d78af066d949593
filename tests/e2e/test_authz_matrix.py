"""Every endpoint and every role of `signer init`: exactly the allowed calls succeed, and every
refusal is in the audit log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tests.e2e.server import Setup, SignerProcess

ROLES = ["anonymous", "issuer", "ci", "approver1", "approver2", "auditor", "admin"]
PUBLIC = set(ROLES)
AUTHENTICATED = PUBLIC - {"anonymous"}


@dataclass(frozen=True)
class Call:
    method: str
    path: Callable[[SignerProcess], str]
    allowed: frozenset[str]
    body: object = None
    ok: int = 200


def standby(server: SignerProcess) -> str:
    ring = server.request("GET", "/v1/rings/default", token=server.setup.tokens["admin"]).json()
    kid: str = next(k["kid"] for k in ring["keys"] if k["state"] in ("pending", "revoked"))
    return kid


# In order: the revoke makes the standby revoked, which the destroy then needs.
CALLS = [
    Call("GET", lambda s: "/.well-known/jwks.json", frozenset(PUBLIC)),
    Call("GET", lambda s: "/v1/rings/default/jwks.json", frozenset(PUBLIC)),
    Call("GET", lambda s: "/v1/audit/keys", frozenset(PUBLIC)),
    Call("GET", lambda s: "/healthz", frozenset(PUBLIC)),
    Call("GET", lambda s: "/readyz", frozenset(PUBLIC)),
    Call("POST", lambda s: "/v1/rings/default/jwt", frozenset({"issuer"}), {"claims": {}}),
    Call("GET", lambda s: "/v1/rings", frozenset({"admin"})),
    Call("GET", lambda s: "/v1/rings/default", frozenset({"admin"})),
    Call("POST", lambda s: "/v1/rings/default/rotate", frozenset({"admin"}), {}, 202),
    Call("POST", lambda s: f"/v1/keys/{standby(s)}/revoke", frozenset({"admin"}), {"reason": "m"}),
    Call(
        "POST",
        lambda s: f"/v1/keys/{standby(s)}/destroy",
        frozenset({"admin"}),
        {"reason": "m"},
        202,
    ),
    Call("GET", lambda s: "/v1/audit", frozenset({"auditor"})),
    Call("GET", lambda s: "/v1/approvals", frozenset(AUTHENTICATED)),
]


def test_each_role_can_make_exactly_its_allowed_calls(fresh_setup: Setup) -> None:
    server = SignerProcess.start(fresh_setup)
    refusals: Counter[tuple[str, str]] = Counter()
    try:
        for call in CALLS:
            for role in ROLES:
                path = call.path(server)
                token = None if role == "anonymous" else fresh_setup.tokens[role]
                response = server.request(call.method, path, body=call.body, token=token)
                if role in call.allowed:
                    assert response.status == call.ok, (call.method, path, role, response.body)
                else:
                    expected = 401 if role == "anonymous" else 403
                    assert response.status == expected, (call.method, path, role, response.body)
                    refusals[(role, path)] += 1
        records = []
        after = 0
        while True:
            page = server.request(
                "GET", f"/v1/audit?after={after}&limit=1000", token=fresh_setup.tokens["auditor"]
            ).json()
            records += page["records"]
            if "next_after" not in page:
                break
            after = page["next_after"]
    finally:
        server.stop()
    denials = Counter(
        (r["actor"], r["target"])
        for r in records
        if r["action"] == "authz.deny" and r["outcome"] == "denied"
    )
    assert denials == refusals
