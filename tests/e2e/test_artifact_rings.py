"""A ring that signs artifacts never signs a JWT, whatever the caller's JWT grants say."""

from __future__ import annotations

import json

from tests.e2e.conftest import MULTI_TOKEN
from tests.e2e.server import SignerProcess, run_cli


def test_a_wildcard_jwt_principal_cannot_sign_a_jwt_with_the_codesign_ring(
    signer: SignerProcess,
) -> None:
    claims = {"claims": {"sub": "x"}}
    single = signer.request("POST", "/v1/rings/codesign/jwt", body=claims, token=MULTI_TOKEN)
    batch = signer.request(
        "POST", "/v1/rings/codesign/jwt:batch", body={"requests": [claims]}, token=MULTI_TOKEN
    )
    allowed = signer.request("POST", "/v1/rings/es384/jwt", body=claims, token=MULTI_TOKEN)

    for refused in (single, batch):
        assert refused.status == 403
        assert refused.json()["code"] == "artifact_ring"
        assert "jwt" not in refused.json()
    assert allowed.status == 200  # the same grant still signs with JWT rings


def test_the_refusal_is_audited(signer: SignerProcess) -> None:
    signer.request("POST", "/v1/rings/codesign/jwt", body={"claims": {}}, token=MULTI_TOKEN)
    exported = run_cli("audit", "export", "--config", str(signer.setup.config)).stdout
    records = [json.loads(line) for line in exported.splitlines()]
    assert any(
        r["action"] == "authz.deny"
        and r["target"] == "/v1/rings/codesign/jwt"
        and r["details"]["code"] == "artifact_ring"
        for r in records
    )
