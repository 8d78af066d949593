"""Bearer-token authentication and scoped permissions."""

from __future__ import annotations

import hashlib

import pytest

from signer.auth import Authenticator, Principal, require
from signer.errors import Forbidden, Unauthenticated
from signer.settings import PrincipalSettings


def principal(name: str, token: str, *permissions: str) -> PrincipalSettings:
    return PrincipalSettings(
        name=name, token_sha256=hashlib.sha256(token.encode()).digest(), permissions=permissions
    )


AUTH = Authenticator(
    [principal("idp", "tok-idp", "jwt:sign:default"), principal("admin", "tok-adm", "keys:admin:*")]
)


def test_known_token_yields_its_principal() -> None:
    assert AUTH.authenticate("Bearer tok-idp").name == "idp"
    assert AUTH.authenticate("bearer tok-adm").name == "admin"


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic dG9rLWlkcA==", "Bearer tok-x", "tok-idp"]
)
def test_missing_or_unknown_token_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        AUTH.authenticate(header)


def test_overlong_token_is_refused_before_hashing() -> None:
    with pytest.raises(Unauthenticated):
        AUTH.authenticate("Bearer " + "x" * 10_000)


def test_error_never_echoes_the_token() -> None:
    with pytest.raises(Unauthenticated) as info:
        AUTH.authenticate("Bearer secret-token-value")
    assert "secret-token-value" not in str(info.value)


def test_wildcard_covers_only_its_prefix() -> None:
    admin = Principal(name="a", permissions=frozenset({"keys:admin:*"}))
    assert admin.allows("keys:admin:default")
    assert not admin.allows("jwt:sign:default")
    assert not admin.allows("keys:adminx:default")


def test_require_names_the_missing_permission() -> None:
    idp = Principal(name="idp", permissions=frozenset({"jwt:sign:default"}))
    require(idp, "jwt:sign:default")
    with pytest.raises(Forbidden, match="jwt:sign:other"):
        require(idp, "jwt:sign:other")
