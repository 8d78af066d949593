"""Tokens from a live ``signer serve`` verify with independent JOSE libraries."""

from __future__ import annotations

import contextlib
import json
import warnings

import jwt
import pytest
from joserfc import jwt as joserfc_jwt
from joserfc.errors import InvalidKeyIdError, SecurityWarning
from joserfc.jwk import JWKRegistry, KeySet

from tests.e2e.conftest import MULTI_TOKEN
from tests.e2e.server import SignerProcess

RINGS = [
    ("default", "ES256"),
    ("es384", "ES384"),
    ("rs256", "RS256"),
    ("ps256", "PS256"),
    ("eddsa", "EdDSA"),
]


def issue(
    signer: SignerProcess, ring: str, claims: dict[str, object], ttl: int = 300
) -> dict[str, object]:
    response = signer.request(
        "POST", f"/v1/rings/{ring}/jwt", body={"claims": claims, "ttl": ttl}, token=MULTI_TOKEN
    )
    assert response.status == 200, response.body
    result: dict[str, object] = response.json()
    return result


def joserfc_warnings(alg: str) -> contextlib.AbstractContextManager[object]:
    """joserfc flags the polymorphic "EdDSA" name as deprecated by RFC 9864; it still verifies."""
    if alg == "EdDSA":
        return pytest.warns(SecurityWarning, match="RFC 9864")
    return warnings.catch_warnings()


@pytest.mark.parametrize(("ring", "alg"), RINGS)
def test_token_verifies_with_pyjwt_against_the_live_jwks_url(
    signer: SignerProcess, ring: str, alg: str
) -> None:
    issued = issue(signer, ring, {"sub": "alice", "aud": "api"})
    client = jwt.PyJWKClient(f"{signer.setup.url}/v1/rings/{ring}/jwks.json")
    token = str(issued["jwt"])
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=[alg], audience="api")
    assert claims["sub"] == "alice"
    assert claims["exp"] == issued["exp"]
    assert claims["exp"] - claims["iat"] == 300
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": issued["kid"], "typ": "JWT"}


@pytest.mark.parametrize(("ring", "alg"), RINGS)
def test_token_verifies_with_joserfc(signer: SignerProcess, ring: str, alg: str) -> None:
    issued = issue(signer, ring, {"sub": "bob", "aud": "api"})
    key_set = KeySet.import_key_set(signer.get_json(f"/v1/rings/{ring}/jwks.json"))
    with joserfc_warnings(alg):
        token = joserfc_jwt.decode(str(issued["jwt"]), key_set, algorithms=[alg])
    registry = joserfc_jwt.JWTClaimsRegistry(aud={"essential": True, "value": "api"})
    registry.validate(token.claims)
    assert token.claims["sub"] == "bob"
    assert token.header["kid"] == issued["kid"]


@pytest.mark.parametrize(("ring", "alg"), RINGS)
def test_kid_is_the_rfc7638_thumbprint_of_the_published_jwk(
    signer: SignerProcess, ring: str, alg: str
) -> None:
    """The JWKS holds the active key and its pre-published standby, each kid a thumbprint."""
    document = signer.get_json(f"/v1/rings/{ring}/jwks.json")
    assert len(document["keys"]) == 2
    for published in document["keys"]:
        assert published["alg"] == alg
        assert published["use"] == "sig"
        assert "d" not in published
        assert JWKRegistry.import_key(published).thumbprint() == published["kid"]


def test_default_jwks_is_the_default_rings(signer: SignerProcess) -> None:
    assert signer.get_json("/.well-known/jwks.json") == signer.get_json(
        "/v1/rings/default/jwks.json"
    )


def test_token_from_another_key_is_rejected_by_the_jwks(signer: SignerProcess) -> None:
    """A relying party that trusts the ES384 ring must not accept the default ring's token."""
    issued = issue(signer, "default", {"sub": "eve"})
    key_set = KeySet.import_key_set(signer.get_json("/v1/rings/es384/jwks.json"))
    with pytest.raises(InvalidKeyIdError):
        joserfc_jwt.decode(str(issued["jwt"]), key_set, algorithms=["ES256", "ES384"])


def test_issuer_role_token_from_init_signs_on_the_default_ring(signer: SignerProcess) -> None:
    response = signer.request(
        "POST",
        "/v1/rings/default/jwt",
        body={"claims": {"sub": "x"}},
        token=signer.setup.tokens["issuer"],
    )
    assert response.status == 200
    payload = jwt.decode(response.json()["jwt"], options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 3600  # token_max_ttl of the init ring
    assert json.loads(response.body).keys() == {"jwt", "kid", "alg", "exp"}


def test_batch_signs_every_claim_set_and_each_verifies(signer: SignerProcess) -> None:
    body = {"requests": [{"claims": {"sub": f"user-{i}", "aud": "api"}} for i in range(100)]}
    response = signer.request("POST", "/v1/rings/eddsa/jwt:batch", body=body, token=MULTI_TOKEN)
    assert response.status == 200, response.body
    tokens = response.json()["tokens"]
    assert len(tokens) == 100
    client = jwt.PyJWKClient(f"{signer.setup.url}/v1/rings/eddsa/jwks.json")
    subjects = []
    for item in tokens:
        key = client.get_signing_key_from_jwt(item["jwt"])
        claims = jwt.decode(item["jwt"], key.key, algorithms=["EdDSA"], audience="api")
        subjects.append(claims["sub"])
    assert subjects == [f"user-{i}" for i in range(100)]


def test_a_bad_item_rejects_the_whole_batch_naming_it(signer: SignerProcess) -> None:
    body = {"requests": [{"claims": {}}, {"claims": {"exp": 1}}]}
    response = signer.request("POST", "/v1/rings/default/jwt:batch", body=body, token=MULTI_TOKEN)
    assert response.status == 400
    assert response.json()["field"] == "requests[1].claims.exp"
