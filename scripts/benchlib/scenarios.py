"""The bench scenarios, and running one: a preflight request, then the load generator.

The preflight sends the scenario's request once and checks the answer, so a run never measures a
stream of errors: a 304 scenario must really get 304s, a batch must really hold 100 tokens. An
endpoint that is not there (404/405, e.g. ``jwt:batch`` before it lands) makes the scenario
``unavailable``, which is reported and is not a failure.

During the run, the built-in loader counts any other status than the expected one as an error;
``wrk`` counts only non-2xx/3xx answers, so there the preflight is what tells a 304 from a 200.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from scripts.benchlib.loadgen import RequestSpec
from scripts.benchlib.results import ScenarioResult, Status
from scripts.benchlib.stats import Measurement

BATCH_SIZE = 100
SIGN_BODY = json.dumps({"claims": {"sub": "bench"}}).encode()
BATCH_BODY = json.dumps({"requests": [{"claims": {"sub": "bench"}}] * BATCH_SIZE}).encode()
# Ring name -> scenario suffix: one signing scenario per algorithm (``default`` is ES256).
SIGN_RINGS = {
    "default": "es256",
    "es384": "es384",
    "rs256": "rs256",
    "ps256": "ps256",
    "eddsa": "eddsa",
}
HSM_RAW = "hsm-raw"
NAMES: tuple[str, ...] = (
    HSM_RAW,
    "baseline-get",
    "jwks-200",
    "jwks-304",
    "baseline-post",
    *(f"sign-{suffix}" for suffix in SIGN_RINGS.values()),
    "batch-es256",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A named load: an HTTP request (or, for ``hsm-raw``, none) and its reference scenario."""

    name: str
    description: str
    reference: str | None
    items_per_request: int = 1
    request: RequestSpec | None = None
    expect_tokens: int | None = None  # a batch answer must hold this many tokens


def hsm_raw() -> Scenario:
    """In-process ``Pkcs11Backend.sign`` (ES256), measured in its own process."""
    return Scenario(
        name=HSM_RAW,
        description="ES256 Pkcs11Backend.sign in-process, N concurrent callers (signatures/s)",
        reference=None,
    )


def http_scenarios(*, signer: str, baseline: str, token: str, etag: str) -> list[Scenario]:
    """Every HTTP scenario against the signer at ``signer`` and the baseline at ``baseline``."""
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    jwks = f"{signer}/.well-known/jwks.json"
    found = [
        Scenario(
            name="baseline-get",
            description="baseline aiohttp GET of fixed bytes of the JWKS's size",
            reference=None,
            request=RequestSpec(method="GET", url=f"{baseline}/jwks.json"),
        ),
        Scenario(
            name="jwks-200",
            description="GET /.well-known/jwks.json, 200 with the body",
            reference="baseline-get",
            request=RequestSpec(method="GET", url=jwks),
        ),
        Scenario(
            name="jwks-304",
            description="GET /.well-known/jwks.json with If-None-Match: the ETag, 304",
            reference="baseline-get",
            request=RequestSpec(
                method="GET", url=jwks, headers={"If-None-Match": etag}, expect=304
            ),
        ),
        Scenario(
            name="baseline-post",
            description="baseline aiohttp POST parsing the signing request's JSON",
            reference=None,
            request=RequestSpec(
                method="POST",
                url=f"{baseline}/sign",
                headers={"Content-Type": "application/json"},
                body=SIGN_BODY,
            ),
        ),
    ]
    for ring, suffix in SIGN_RINGS.items():
        found.append(
            Scenario(
                name=f"sign-{suffix}",
                description=f"POST /v1/rings/{ring}/jwt {{claims: {{sub}}}} ({suffix.upper()})",
                reference="baseline-post",
                request=RequestSpec(
                    method="POST", url=f"{signer}/v1/rings/{ring}/jwt", headers=auth, body=SIGN_BODY
                ),
            )
        )
    found.append(
        Scenario(
            name="batch-es256",
            description=f"POST /v1/rings/default/jwt:batch, {BATCH_SIZE} claims sets per request",
            reference=HSM_RAW,
            items_per_request=BATCH_SIZE,
            request=RequestSpec(
                method="POST",
                url=f"{signer}/v1/rings/default/jwt:batch",
                headers=auth,
                body=BATCH_BODY,
            ),
            expect_tokens=BATCH_SIZE,
        )
    )
    return found


def send_once(spec: RequestSpec) -> tuple[int, bytes]:
    """Send ``spec`` once with urllib: status and body (error statuses included)."""
    request = urllib.request.Request(  # noqa: S310 -- loopback URL built by the bench
        spec.url, data=spec.body, method=spec.method, headers=dict(spec.headers)
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _problem_code(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return str(parsed.get("code", "")) if isinstance(parsed, dict) else ""


class Unavailable(Exception):
    """The scenario's endpoint does not exist on this signer."""


def preflight(
    scenario: Scenario, *, send: Callable[[RequestSpec], tuple[int, bytes]] = send_once
) -> None:
    """Send the request once; raise ``Unavailable`` (404/405) or ``RuntimeError`` if it is wrong."""
    spec = scenario.request
    if spec is None:
        return
    status, body = send(spec)
    if status in (404, 405) and spec.expect not in (404, 405):
        code = _problem_code(body)
        path = urllib.parse.urlsplit(spec.url).path
        raise Unavailable(f"{spec.method} {path} answered {status}" + (f" {code}" if code else ""))
    if status != spec.expect:
        raise RuntimeError(f"expected {spec.expect}, got {status}: {body[:300]!r}")
    if scenario.expect_tokens is not None:
        parsed = json.loads(body)
        tokens = parsed.get("tokens") if isinstance(parsed, dict) else None
        if not isinstance(tokens, list) or len(tokens) != scenario.expect_tokens:
            count = len(tokens) if isinstance(tokens, list) else "no"
            raise RuntimeError(f"expected {scenario.expect_tokens} tokens, got {count}")


Measure = Callable[[RequestSpec], Measurement]


def result_of(
    scenario: Scenario,
    status: Status,
    *,
    reason: str | None = None,
    measurement: Measurement | None = None,
) -> ScenarioResult:
    """The result record of ``scenario``."""
    return ScenarioResult(
        name=scenario.name,
        description=scenario.description,
        reference=scenario.reference,
        items_per_request=scenario.items_per_request,
        status=status,
        reason=reason,
        measurement=measurement,
    )


def run(scenario: Scenario, measure: Measure) -> ScenarioResult:
    """Preflight, then measure; never raises for the server's faults: they become the status."""
    if scenario.request is None:
        raise ValueError(f"{scenario.name} has no HTTP request to run")
    try:
        preflight(scenario)
        measurement = measure(scenario.request)
    except Unavailable as exc:
        return result_of(scenario, Status.UNAVAILABLE, reason=str(exc))
    except (RuntimeError, OSError, ValueError) as exc:
        return result_of(scenario, Status.FAILED, reason=f"{type(exc).__name__}: {exc}")
    return result_of(scenario, Status.OK, measurement=measurement)
