"""Metrics move with traffic; every response and log line carries a request id."""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import MULTI_TOKEN
from tests.e2e.server import SignerProcess


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if all(f'{k}="{v}"' in found for k, v in labels.items()) or wanted == found:
            total += float(match.group(3))
    return total


def scrape(signer: SignerProcess) -> str:
    response = signer.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.body.decode()


def test_metrics_exist_and_move(signer: SignerProcess) -> None:
    before = scrape(signer)
    for _ in range(3):
        signer.request("POST", "/v1/rings/es384/jwt", body={"claims": {}}, token=MULTI_TOKEN)
    etag = signer.request("GET", "/v1/rings/es384/jwks.json").headers["ETag"]
    signer.request("GET", "/v1/rings/es384/jwks.json", headers={"If-None-Match": etag})
    after = scrape(signer)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("signer_jwt_sign_duration_seconds_count", ring="es384", alg="ES384") == 3
    assert moved("signer_hsm_operation_duration_seconds_count", operation="sign") >= 3
    assert (
        moved(
            "signer_http_request_duration_seconds_count",
            route="/v1/rings/{ring}/jwt",
            status="200",
        )
        >= 3
    )
    assert moved("signer_jwks_requests_total", ring="es384", status="304") == 1
    assert moved("signer_jwks_requests_total", ring="es384", status="200") == 1
    assert moved("signer_audit_batch_records_count") >= 1
    assert moved("signer_audit_commit_duration_seconds_count") >= 1
    assert sample(after, "signer_active_key_age_seconds", ring="es384") >= 0
    assert 0 < sample(after, "signer_next_lifecycle_step_seconds", ring="es384") <= 30 * 86400
    assert "signer_audit_queue_depth" in after
    assert "signer_rate_limited_total" in after or "signer_hsm_errors_total" in after


def test_a_batch_counts_each_of_its_tokens_in_the_sign_metrics(signer: SignerProcess) -> None:
    before = scrape(signer)
    body = {"requests": [{"claims": {"sub": f"m{i}"}} for i in range(4)]}
    response = signer.request("POST", "/v1/rings/es384/jwt:batch", body=body, token=MULTI_TOKEN)
    after = scrape(signer)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert response.status == 200
    assert moved("signer_jwt_sign_duration_seconds_count", ring="es384", alg="ES384") == 4
    assert moved("signer_hsm_operation_duration_seconds_count", operation="sign") >= 4


def test_every_response_has_a_request_id_and_problems_carry_it(signer: SignerProcess) -> None:
    ok = signer.request("GET", "/healthz")
    again = signer.request("GET", "/healthz")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", ok.headers["X-Request-Id"])
    assert again.headers["X-Request-Id"] != ok.headers["X-Request-Id"]
    refused = signer.request(
        "POST", "/v1/rings/default/jwt", body={"claims": {}}, headers={"X-Request-Id": "trace-42"}
    )
    assert refused.headers["X-Request-Id"] == "trace-42"
    assert refused.json()["request_id"] == "trace-42"
    odd = signer.request("GET", "/healthz", headers={"X-Request-Id": "bad id\u00e9"})
    assert odd.headers["X-Request-Id"] != "bad id\u00e9"


def test_log_lines_are_json_with_the_request_id(signer: SignerProcess) -> None:
    signer.request(
        "POST",
        "/v1/rings/default/jwt",
        body={"claims": {}},
        token="sgn_not-a-token",
        headers={"X-Request-Id": "log-probe-7"},
    )
    lines = [line for line in signer.log().splitlines() if line.startswith("{")]
    parsed = [json.loads(line) for line in lines]
    assert parsed
    assert all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
    (refusal,) = [p for p in parsed if p.get("request_id") == "log-probe-7"]
    assert refusal["code"] == "unauthenticated"
    assert "sgn_not-a-token" not in signer.log()
