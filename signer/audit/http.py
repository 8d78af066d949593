"""The audit log over HTTP: ``GET /v1/audit`` for ``audit:read``, and the checkpoint key."""

from __future__ import annotations

from aiohttp import web

from jwks.document import build_jwks
from jwks.jwk import Jwk, published_jwk
from signer import routing
from signer.auth import require
from signer.context import SERVICE, json_response, principal_of
from signer.errors import InvalidField
from signer.service import AUDIT_KID

MAX_LIMIT = 1000


def _int_param(request: web.Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    """Query parameter ``name``: ASCII digits (``str.isdigit`` also takes ``²`` and ``①``),
    given at most once, from ``minimum`` to ``maximum``."""
    given = request.query.getall(name, [])
    if not given:
        return default
    if len(given) > 1:
        raise InvalidField(f"'{name}' is given more than once", field=name)
    raw = given[0]
    digits = raw.isascii() and raw.isdigit() and len(raw) <= len(str(maximum))
    if not digits or not minimum <= int(raw) <= maximum:
        raise InvalidField(f"'{name}' must be an integer from {minimum} to {maximum}", field=name)
    return int(raw)


async def list_audit(request: web.Request) -> web.Response:
    """GET /v1/audit?after=SEQ&limit=N: committed records after ``after``, oldest first."""
    principal = principal_of(request)
    require(principal, "audit:read")
    after = _int_param(request, "after", 0, minimum=0, maximum=2**62)
    limit = _int_param(request, "limit", 100, minimum=1, maximum=MAX_LIMIT)
    records = await request.app[SERVICE].store.audit_records(after=after, limit=limit)
    body: dict[str, object] = {"records": [r.to_json() for r in records]}
    if len(records) == limit:
        body["next_after"] = records[-1].seq
    return json_response(body)


async def audit_keys(request: web.Request) -> web.Response:
    """GET /v1/audit/keys: the public key(s) that sign audit checkpoints, as a JWKS."""
    store = request.app[SERVICE].store
    kid = await store.get_meta(AUDIT_KID)
    record = None if kid is None else await store.get_key(kid)  # type: ignore[arg-type]
    keys = [] if record is None else [published_jwk(record.alg, Jwk(**record.jwk), record.kid)]  # type: ignore[typeddict-item]
    return web.Response(body=build_jwks(keys).body, content_type="application/jwk-set+json")


def add_routes(app: web.Application) -> None:
    """Register the audit endpoints."""
    routing.get(app, "/v1/audit", list_audit)
    routing.get(app, "/v1/audit/keys", audit_keys)
