"""Key administration over HTTP: rings, keys, rotation and the kill-switch.

Every endpoint needs ``keys:admin:<ring>``; listing shows only the rings a principal administers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web

from jwks.records import KeyRecord, KeyState
from jwks.thumbprint import KeyId
from signer import routing
from signer.approvals.rules import ApprovalPolicy
from signer.approvals.rules import to_json as approval_json
from signer.auth import require
from signer.bodies import read_json
from signer.context import APPROVALS, KEEPER, SERVICE, SETTINGS, json_response, principal_of
from signer.errors import (
    Conflict,
    Forbidden,
    InvalidField,
    MalformedJson,
    UnknownField,
    UnknownKey,
)
from signer.key_events import policy_document
from signer.rings import RingView

MAX_REASON = 500


def key_document(record: KeyRecord) -> dict[str, Any]:
    """A key record as the admin API shows it (public material and lifecycle facts only)."""
    doc = asdict(record)
    doc["alg"] = record.alg.value
    doc["state"] = record.state.value
    doc["jwk"] = dict(record.jwk)
    return doc


def ring_document(
    view: RingView, records: Sequence[KeyRecord], next_transition_at: int | None
) -> dict[str, Any]:
    """A ring's policy, keys (their ``records`` as stored: the view's copies do not follow the
    exp watermarks that signing raises) and schedule."""
    policy = view.policy
    document = policy_document(policy)
    del document["alg"]
    return {
        "name": policy.name,
        "alg": policy.alg.value,
        "policy": document,
        "active_kid": view.signing.record.kid if view.signing else None,
        "next_transition_at": next_transition_at,
        "keys": [key_document(r) for r in records],
    }


def _options(body: object, allowed: dict[str, type]) -> dict[str, Any]:
    """Check a small admin body: an object with only ``allowed`` members of the right types."""
    if not isinstance(body, dict):
        raise MalformedJson("the request body must be a JSON object")
    for name, value in body.items():
        if name not in allowed:
            raise UnknownField(f"unknown field {name!r}", field=name)
        if not isinstance(value, allowed[name]):
            raise InvalidField(f"{name!r} must be {allowed[name].__name__}", field=name)
    return body


async def _optional_body(request: web.Request) -> object:
    if not request.body_exists:
        return {}
    return await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)


async def list_rings(request: web.Request) -> web.Response:
    """GET /v1/rings: the rings this principal administers."""
    principal = principal_of(request)
    service = request.app[SERVICE]
    keeper = request.app[KEEPER]
    rings = [
        ring_document(view, await service.store.keys(name), keeper.next_transition(name))
        for name, view in service.views.items()
        if principal.allows(f"keys:admin:{name}")
    ]
    if not rings:
        raise Forbidden(f"principal {principal.name!r} administers no ring (keys:admin:<ring>)")
    return json_response({"rings": rings})


async def get_ring(request: web.Request) -> web.Response:
    """GET /v1/rings/{ring}: keys with state and every lifecycle timestamp."""
    principal = principal_of(request)
    ring = request.match_info["ring"]
    service = request.app[SERVICE]
    view = service.view(ring)
    require(principal, f"keys:admin:{ring}")
    records = await service.store.keys(ring)
    return json_response(ring_document(view, records, request.app[KEEPER].next_transition(ring)))


async def rotate_ring(request: web.Request) -> web.Response:
    """POST /v1/rings/{ring}/rotate: a safe rotation via the pre-published standby."""
    principal = principal_of(request)
    ring = request.match_info["ring"]
    request.app[SERVICE].view(ring)
    require(principal, f"keys:admin:{ring}")
    options = _options(await _optional_body(request), {"immediate": bool, "reason": str})
    accepted = await request.app[KEEPER].rotate(
        ring,
        immediate=options.get("immediate", False),
        reason=_optional_reason(options),
        actor=principal.name,
    )
    return json_response(
        {
            "ring": accepted.ring,
            "requested_at": accepted.requested_at,
            "activates_at": accepted.activates_at,
        },
        status=202,
    )


async def revoke_key(request: web.Request) -> web.Response:
    """POST /v1/keys/{kid}/revoke: the kill-switch."""
    principal = principal_of(request)
    kid = KeyId(request.match_info["kid"])
    record = await request.app[SERVICE].store.get_key(kid)
    if record is None:
        raise UnknownKey(f"no key with kid {kid!r}")
    require(principal, f"keys:admin:{record.ring}")
    body = await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)
    reason = _reason(_options(body, {"reason": str}))
    done = await request.app[KEEPER].revoke(kid, reason, actor=principal.name)
    return json_response({"key": key_document(done.revoked), "active_kid": done.active})


def add_routes(app: web.Application) -> None:
    """Register the admin endpoints."""
    routing.get(app, "/v1/rings", list_rings)
    routing.get(app, "/v1/rings/{ring}", get_ring)
    routing.post(app, "/v1/rings/{ring}/rotate", rotate_ring)
    routing.post(app, "/v1/keys/{kid}/revoke", revoke_key)
    routing.post(app, "/v1/keys/{kid}/destroy", destroy_key)
    routing.post(app, "/v1/keys/{kid}/reinstate", reinstate_key)


async def _key_operation(request: web.Request, operation: str) -> web.Response:
    """POST /v1/keys/{kid}/destroy|reinstate: open an approval; quorum runs it."""
    principal = principal_of(request)
    kid = KeyId(request.match_info["kid"])
    record = await request.app[SERVICE].store.get_key(kid)
    if record is None or record.ring not in request.app[SERVICE].views:
        raise UnknownKey(f"no key with kid {kid!r}")
    require(principal, f"keys:admin:{record.ring}")
    body = await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)
    reason = _reason(_options(body, {"reason": str}))
    policy = request.app[SERVICE].view(record.ring).policy
    verb = operation.removeprefix("key.")
    rule = policy.approvals.get(verb)
    if rule is None:
        raise Conflict(
            f"ring {record.ring!r} has no [rings.approvals] {verb} rule; "
            f"{verb} needs a quorum policy"
        )
    if record.state not in (KeyState.RETIRED, KeyState.REVOKED):
        raise Conflict(
            f"key {kid} is {record.state.value}; only retired or revoked keys can {verb}"
        )
    members = next(g.members for g in request.app[SETTINGS].groups if g.name == rule.group)
    approval = await request.app[APPROVALS].create(
        operation=operation,
        target=kid,
        requester=principal.name,
        policy=ApprovalPolicy(group=rule.group, members=frozenset(members), required=rule.required),
        details={"ring": record.ring, "reason": reason},
    )
    return json_response({"approval": approval_json(approval)}, status=202)


async def destroy_key(request: web.Request) -> web.Response:
    """POST /v1/keys/{kid}/destroy: destroy a retired or revoked key early, with quorum."""
    return await _key_operation(request, "key.destroy")


async def reinstate_key(request: web.Request) -> web.Response:
    """POST /v1/keys/{kid}/reinstate: back a revoked or retired key out, with quorum."""
    return await _key_operation(request, "key.reinstate")


def _optional_reason(options: dict[str, Any]) -> str:
    """A rotation's reason: optional, but held to the same length as a required one."""
    return _reason(options) if str(options.get("reason", "")).strip() else ""


def _reason(options: dict[str, Any]) -> str:
    reason = str(options.get("reason", "")).strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidField(f"'reason' must be 1 to {MAX_REASON} characters", field="reason")
    return reason
