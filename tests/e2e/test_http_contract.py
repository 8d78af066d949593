"""The HTTP contract of a live signer: bad input gets a precise problem, JWKS caching works."""

from __future__ import annotations

import http.client
import json
import re
import socket

import pytest

from tests.e2e.conftest import LIMITED_TOKEN, MULTI_TOKEN
from tests.e2e.server import Setup, SignerProcess

PROBLEM = "application/problem+json"
SIGN = "/v1/rings/default/jwt"


def assert_problem(response: object, status: int, code: str, field: str | None = None) -> None:
    from tests.e2e.server import Response  # noqa: PLC0415 -- typing aid only

    assert isinstance(response, Response)
    assert response.status == status, response.body
    assert response.headers["Content-Type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:signer:problem:{code}"
    assert problem["title"]
    assert problem["detail"]
    if field is not None:
        assert problem["field"] == field
    assert b"Traceback" not in response.body


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"claims": {"sub": "a", "iat": 1}}, "reserved_claim", "claims.iat"),
        ({"claims": {"sub": "a", "exp": 1}}, "reserved_claim", "claims.exp"),
        ({"claims": {}, "ttl": 3601}, "invalid_field", "ttl"),
        ({"claims": {}, "ttl": -1}, "invalid_field", "ttl"),
        ({"claims": "sub=a"}, "invalid_field", "claims"),
        ({"claims": {}, "typ": "JWT\n"}, "invalid_field", "typ"),
        ({"claims": {}, "alg": "none"}, "unknown_field", "alg"),
        ([], "malformed_json", None),
    ],
)
def test_bad_fields_get_a_400_naming_the_field(
    signer: SignerProcess, body: object, code: str, field: str | None
) -> None:
    response = signer.request("POST", SIGN, body=body, token=signer.setup.tokens["issuer"])
    assert_problem(response, 400, code, field)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"claims": {"sub": "a", "sub": "b"}}',
        b"",
        b"\xff",
        b'{"claims": {"x": 1e400}}',
        b'{"claims": {"x": ' + b"9" * 5000 + b"}}",
        b'{"claims": {"a": ' + b"[" * 900 + b"]" * 900 + b"}}",
    ],
    ids=["syntax", "duplicate-member", "empty", "not-utf8", "infinite", "digits", "deep"],
)
def test_malformed_json_gets_400(signer: SignerProcess, raw: bytes) -> None:
    response = signer.request(
        "POST",
        SIGN,
        raw=raw,
        token=signer.setup.tokens["issuer"],
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_claims_refused_as_malformed_raise_no_watermark(fresh_setup: Setup) -> None:
    """A refused body writes nothing: the active key's watermark stays where it was."""
    server = SignerProcess.start(fresh_setup)
    try:
        admin, issuer = fresh_setup.tokens["admin"], fresh_setup.tokens["issuer"]
        raw = b'{"claims": {"x": 1e400}}'
        headers = {"Content-Type": "application/json"}
        response = server.request("POST", SIGN, raw=raw, token=issuer, headers=headers)
        assert_problem(response, 400, "malformed_json")
        keys = server.request("GET", "/v1/rings/default", token=admin).json()["keys"]
        assert [k["exp_watermark"] for k in keys if k["state"] == "active"] == [None]
    finally:
        server.stop()


@pytest.mark.parametrize(
    "query",
    ["limit=%C2%B2", "after=%E2%91%A0", "after=" + "1" * 5000, "limit=0", "limit=5&limit=abc"],
    ids=["superscript", "circled", "digits", "zero", "twice"],
)
def test_bad_audit_query_parameters_get_a_400_naming_them(
    signer: SignerProcess, query: str
) -> None:
    response = signer.request("GET", f"/v1/audit?{query}", token=signer.setup.tokens["auditor"])
    assert_problem(response, 400, "invalid_field", query.split("=", 1)[0])


def test_oversized_body_gets_413(signer: SignerProcess) -> None:
    body = {"claims": {"pad": "x" * 70_000}}
    response = signer.request("POST", SIGN, body=body, token=signer.setup.tokens["issuer"])
    assert_problem(response, 413, "body_too_large")


@pytest.mark.parametrize(
    ("content_type", "detail"),
    [
        ("text/plain", "got 'text/plain'"),
        ("application/json; charset=iso-8859-1", "charset 'iso-8859-1'"),
    ],
    ids=["other-type", "other-charset"],
)
def test_wrong_content_type_gets_415(signer: SignerProcess, content_type: str, detail: str) -> None:
    response = signer.request(
        "POST",
        SIGN,
        raw=b'{"claims": {}}',
        token=signer.setup.tokens["issuer"],
        headers={"Content-Type": content_type},
    )
    assert_problem(response, 415, "unsupported_media_type")
    assert detail in response.json()["detail"]


def test_a_body_without_a_content_type_gets_415_saying_so(signer: SignerProcess) -> None:
    body = b'{"claims": {}}'
    answer = raw_request(
        signer,
        f"POST {SIGN} HTTP/1.1\r\nHost: x\r\n".encode()
        + f"Authorization: Bearer {signer.setup.tokens['issuer']}\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    head, _, problem = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"415"
    assert json.loads(problem)["detail"].endswith("got 'none'")


def test_json_in_utf8_with_its_charset_named_is_accepted(signer: SignerProcess) -> None:
    response = signer.request(
        "POST",
        SIGN,
        raw=b'{"claims": {}}',
        token=signer.setup.tokens["issuer"],
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert response.status == 200, response.body


def test_unknown_ring_gets_404(signer: SignerProcess) -> None:
    response = signer.request("POST", "/v1/rings/nope/jwt", body={"claims": {}}, token=MULTI_TOKEN)
    assert_problem(response, 404, "unknown_ring")
    assert_problem(signer.request("GET", "/v1/rings/nope/jwks.json"), 404, "unknown_ring")


def test_missing_token_gets_401_with_a_challenge(signer: SignerProcess) -> None:
    response = signer.request("POST", SIGN, body={"claims": {}})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_gets_401(signer: SignerProcess) -> None:
    response = signer.request("POST", SIGN, body={"claims": {}}, token="sgn_guess")
    assert_problem(response, 401, "unauthenticated")


def test_missing_permission_gets_403(signer: SignerProcess) -> None:
    """The admin role may manage keys but not sign tokens."""
    response = signer.request("POST", SIGN, body={"claims": {}}, token=signer.setup.tokens["admin"])
    assert_problem(response, 403, "forbidden")
    assert "jwt:sign:default" in response.json()["detail"]


def test_permission_is_scoped_to_the_ring(signer: SignerProcess) -> None:
    response = signer.request(
        "POST", "/v1/rings/es384/jwt", body={"claims": {}}, token=signer.setup.tokens["issuer"]
    )
    assert_problem(response, 403, "forbidden")


def test_rate_limited_principal_gets_429_with_retry_after(signer: SignerProcess) -> None:
    statuses = [
        signer.request("POST", SIGN, body={"claims": {}}, token=LIMITED_TOKEN).status
        for _ in range(3)
    ]
    assert statuses == [200, 200, 200]
    refused = signer.request("POST", SIGN, body={"claims": {}}, token=LIMITED_TOKEN)
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    # Other principals are not affected.
    issuer = signer.request("POST", SIGN, body={"claims": {}}, token=signer.setup.tokens["issuer"])
    assert issuer.status == 200


def test_unknown_route_and_method_are_problems(signer: SignerProcess) -> None:
    missing = signer.request("DELETE", "/v1/nothing/at/all")
    assert_problem(missing, 404, "not_found")
    assert missing.headers["X-Request-Id"]
    response = signer.request("GET", SIGN)
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    jwks = signer.request("POST", "/.well-known/jwks.json", body={})
    assert_problem(jwks, 405, "method_not_allowed")
    assert "GET" in jwks.headers["Allow"]
    metrics = signer.request("GET", "/metrics").body.decode()
    assert 'method="DELETE",route="unmatched",status="404"' in metrics
    assert "{unmatched" not in metrics  # the catch-all never leaks its pattern as a label


def test_tokens_never_reach_the_log(signer: SignerProcess) -> None:
    signer.request("POST", SIGN, body={"claims": {}}, token="sgn_leak-canary")
    signer.request("POST", SIGN, body={"claims": {}}, token=signer.setup.tokens["issuer"])
    log = signer.log()
    assert "sgn_leak-canary" not in log
    assert signer.setup.tokens["issuer"] not in log


def raw_request(signer: SignerProcess, head: bytes) -> bytes:
    """Send ``head`` (a request without a body) as bytes, as no HTTP client would; the answer."""
    host, port = signer.setup.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_malformed_header_never_puts_its_token_in_the_log(signer: SignerProcess) -> None:
    """aiohttp's parser refuses a header with a control character and quotes the line it
    refused; the signer's log keeps only the kind of fault."""
    canary = "sgn_malformed-header-canary"
    answer = raw_request(
        signer,
        b"GET /v1/rings HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {canary}".encode()
        + b"\x01\r\nConnection: close\r\n\r\n",
    )
    assert answer.split(b" ", 2)[1] == b"400"
    log = signer.log()
    assert canary not in log
    assert "refused a malformed HTTP request (BadHttpMessage, status 400)" in log


def test_two_authorization_headers_are_refused(signer: SignerProcess) -> None:
    """A proxy reading the last header and the signer reading the first would disagree on
    who calls."""
    tokens = signer.setup.tokens
    answer = raw_request(
        signer,
        b"GET /v1/rings HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {tokens['issuer']}\r\n".encode()
        + f"Authorization: Bearer {tokens['admin']}\r\n".encode()
        + b"Connection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    assert json.loads(body)["detail"] == "send one Authorization header, not several"


def test_jwks_has_strong_etag_and_bounded_cache_control(signer: SignerProcess) -> None:
    response = signer.request("GET", "/.well-known/jwks.json")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/jwk-set+json")
    assert re.fullmatch(r'"[A-Za-z0-9_-]{43}"', response.headers["ETag"])
    cache_control = response.headers["Cache-Control"]
    assert "public" in cache_control
    assert "no-store" not in cache_control
    max_age = int(re.search(r"max-age=(\d+)", cache_control).group(1))  # type: ignore[union-attr]
    stale = int(re.search(r"stale-while-revalidate=(\d+)", cache_control).group(1))  # type: ignore[union-attr]
    assert 0 < max_age + stale < 3600  # jwks_max_age of the default ring, stale time included


def test_jwks_answers_304_to_a_matching_if_none_match(signer: SignerProcess) -> None:
    first = signer.request("GET", "/.well-known/jwks.json")
    etag = first.headers["ETag"]
    again = signer.request("GET", "/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["ETag"] == etag
    other = signer.request("GET", "/.well-known/jwks.json", headers={"If-None-Match": '"x"'})
    assert other.status == 200
    assert other.body == first.body


def test_if_none_match_over_two_header_lines_is_one_list(signer: SignerProcess) -> None:
    """RFC 9110 §5.3: a proxy may split the list; the ETag on the second line still counts."""
    etag = signer.request("GET", "/.well-known/jwks.json").headers["ETag"]
    conn = http.client.HTTPConnection("127.0.0.1", signer.setup.port, timeout=10)
    try:
        conn.putrequest("GET", "/.well-known/jwks.json")
        conn.putheader("If-None-Match", '"other"')
        conn.putheader("If-None-Match", etag)
        conn.endheaders()
        assert conn.getresponse().status == 304
    finally:
        conn.close()


def test_health_and_readiness(signer: SignerProcess) -> None:
    assert signer.get_json("/healthz") == {"status": "ok"}
    assert signer.get_json("/readyz") == {
        "status": "ready",
        "checks": {"hsm": "ok", "store": "ok"},
    }
