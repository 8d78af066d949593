"""JWT request parsing: the signer owns iat/exp; bad fields are named."""

from __future__ import annotations

import os

import pytest

from jwks.b64 import b64url_decode
from signer.errors import InvalidField, MalformedJson, ReservedClaim, SignerError, UnknownField
from signer.tokens import JwtRequest, parse_batch

MAX = 3600


def test_defaults_ttl_to_the_ring_maximum_and_adds_jti() -> None:
    request = JwtRequest.parse({"claims": {"sub": "alice"}}, token_max_ttl=MAX)
    claims = request.claims_at(1000, token_max_ttl=MAX)
    assert claims["iat"] == 1000
    assert claims["exp"] == 1000 + MAX
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert request.typ == "JWT"


def test_keeps_a_callers_jti_and_ttl() -> None:
    request = JwtRequest.parse(
        {"claims": {"sub": "a", "jti": "j-1"}, "ttl": 60, "typ": "at+jwt"}, token_max_ttl=MAX
    )
    claims = request.claims_at(10, token_max_ttl=MAX)
    assert claims["jti"] == "j-1"
    assert claims["exp"] == 70
    assert request.typ == "at+jwt"


def test_jtis_are_distinct_16_byte_values_across_buffer_refills() -> None:
    request = JwtRequest.parse({"claims": {}}, token_max_ttl=MAX)
    jtis = [request.claims_at(0, token_max_ttl=MAX)["jti"] for _ in range(1000)]  # 4 refills
    assert len(set(jtis)) == len(jtis)
    assert all(len(b64url_decode(jti)) == 16 for jti in jtis)


def test_a_forked_worker_does_not_repeat_its_parents_jtis() -> None:
    """Workers are forked; a shared random buffer would give two workers the same jti."""
    request = JwtRequest.parse({"claims": {}}, token_max_ttl=MAX)
    request.claims_at(0, token_max_ttl=MAX)  # the parent's buffer holds unused values now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next jti and leave at once
        os.write(write, request.claims_at(0, token_max_ttl=MAX)["jti"].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != request.claims_at(0, token_max_ttl=MAX)["jti"]


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({"claims": {"iat": 1}}, ReservedClaim, "claims.iat"),
        ({"claims": {"exp": 1}}, ReservedClaim, "claims.exp"),
        ({"claims": {"nbf": 1}}, ReservedClaim, "claims.nbf"),
        ({"claims": {}, "ttl": MAX + 1}, InvalidField, "ttl"),
        ({"claims": {}, "ttl": 0}, InvalidField, "ttl"),
        ({"claims": {}, "ttl": "60"}, InvalidField, "ttl"),
        ({"claims": {}, "ttl": True}, InvalidField, "ttl"),
        ({"claims": {}, "typ": "a b"}, InvalidField, "typ"),
        ({"claims": {"jti": 5}}, InvalidField, "claims.jti"),
        ({"claims": {"sub": 123}}, InvalidField, "claims.sub"),
        ({"claims": {"iss": ["a"]}}, InvalidField, "claims.iss"),
        ({"claims": {"aud": 5}}, InvalidField, "claims.aud"),
        ({"claims": {"aud": []}}, InvalidField, "claims.aud"),
        ({"claims": {"aud": ["a", 1]}}, InvalidField, "claims.aud"),
        ({"claims": []}, InvalidField, "claims"),
        ({}, InvalidField, "claims"),
        ({"claims": {}, "kid": "x"}, UnknownField, "kid"),
    ],
)
def test_bad_requests_name_the_field(
    body: dict[str, object], error: type[SignerError], field: str
) -> None:
    with pytest.raises(error) as info:
        JwtRequest.parse(body, token_max_ttl=MAX)
    assert info.value.field == field
    assert info.value.status == 400


@pytest.mark.parametrize(
    "claims", [{"sub": "u", "iss": "https://idp", "aud": "rp"}, {"aud": ["rp1", "rp2"]}]
)
def test_registered_claims_of_the_right_types_are_kept(claims: dict[str, object]) -> None:
    request = JwtRequest.parse({"claims": claims}, token_max_ttl=MAX)
    assert request.claims_at(0, token_max_ttl=MAX).items() >= claims.items()


def test_non_object_body_is_malformed() -> None:
    with pytest.raises(MalformedJson):
        JwtRequest.parse(["claims"], token_max_ttl=MAX)


def test_batch_parses_each_request() -> None:
    parsed = parse_batch(
        {"requests": [{"claims": {"sub": str(i)}} for i in range(100)]}, token_max_ttl=MAX
    )
    assert [p.claims["sub"] for p in parsed] == [str(i) for i in range(100)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests": []}, "requests"),
        ({"requests": [{"claims": {}}] * 101}, "requests"),
        ({"requests": {"claims": {}}}, "requests"),
        ({"requests": [{"claims": {}}], "ttl": 5}, "ttl"),
        ({"requests": [{"claims": {}}, {"claims": {"iat": 1}}]}, "requests[1].claims.iat"),
        ({"requests": [{"claims": {}}, {"claims": {}, "ttl": MAX + 1}]}, "requests[1].ttl"),
    ],
)
def test_bad_batches_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(SignerError) as info:
        parse_batch(body, token_max_ttl=MAX)
    assert info.value.status == 400
    assert info.value.field == field
