"""Signing requests over HTTP, and the PEM of each published ring key.

- ``POST /v1/signing-requests``: a profile's requester asks; 201 with the request and its approval
- ``GET /v1/signing-requests[?state=]``, ``GET /v1/signing-requests/{id}``
- ``POST /v1/signing-requests/{id}/approve|deny``: shorthands for the approvals engine's votes
- ``GET /v1/rings/{ring}/keys/{kid}.pem``: public; the SubjectPublicKeyInfo PEM of a key that is
  in the ring's JWKS, for ``cosign verify-blob --key`` and other PEM-only verifiers

A principal sees a request it made, one of a profile it may request or approve on, one its
approver group may vote on, or any with ``audit:read``; others get 404, as for an unknown id,
also when they try to vote on it. A principal that may not request on a profile gets 403 whether
or not the profile exists.
"""

from __future__ import annotations

from typing import Any, TypedDict

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from jwks.jwk import Jwk, public_key_from_jwk
from jwks.lifecycle import published
from signer import routing
from signer.approvals.http import read_comment
from signer.approvals.rules import ApprovalJson, ApprovalRequest, Decision
from signer.approvals.rules import to_json as approval_json
from signer.bodies import read_json
from signer.codesign.records import (
    OutputsJson,
    RequestState,
    SigningRequest,
    SubjectJson,
    UnknownSigningRequest,
    subjects_json,
)
from signer.codesign.requests import check_any_requester, parse_request
from signer.codesign.shell import visible
from signer.context import CODESIGN, SERVICE, SETTINGS, json_response, principal_of
from signer.errors import InvalidField, UnknownKey

PEM_CONTENT_TYPE = "application/x-pem-file"
_STATES = frozenset(state.value for state in RequestState)


class SigningRequestView(TypedDict):
    """A signing request as the API shows it."""

    id: str
    state: str
    profile: str
    kind: str
    subjects: list[SubjectJson]
    predicate_type: str | None
    predicate: dict[str, Any] | None
    reason: str
    change_id: str | None
    requester: str
    created_at: int
    signed_at: int | None
    kid: str | None
    key_url: str | None  # the signing key's PEM (a path on this signer), once signed
    approval_id: str
    approval: ApprovalJson | None
    outputs: OutputsJson


def request_view(record: SigningRequest, approval: ApprovalRequest | None) -> SigningRequestView:
    """The API shape of a request; ``outputs`` is ``{}`` until it is signed."""
    return {
        "id": record.id,
        "state": record.state.value,
        "profile": record.profile,
        "kind": record.kind.value,
        "subjects": subjects_json(record.subjects),
        "predicate_type": record.predicate_type,
        "predicate": None if record.predicate is None else dict(record.predicate),
        "reason": record.reason,
        "change_id": record.change_id,
        "requester": record.requester,
        "created_at": record.created_at,
        "signed_at": record.signed_at,
        "kid": record.kid,
        "key_url": None
        if record.ring is None or record.kid is None
        else f"/v1/rings/{record.ring}/keys/{record.kid}.pem",
        "approval_id": approval.id if approval is not None else record.approval_id,
        "approval": None if approval is None else approval_json(approval),
        "outputs": record.outputs,
    }


async def create_request(request: web.Request) -> web.Response:
    """POST /v1/signing-requests."""
    principal = principal_of(request)
    # Which profile is asked for is in the body; a principal that may request on none is
    # refused (403, audited) before the body is read, as the contract orders its checks.
    check_any_requester(principal, request.app[SETTINGS].profiles)
    body = await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)
    record, approval = await request.app[CODESIGN].create(principal, parse_request(body))
    return json_response(request_view(record, approval), status=201)


async def list_requests(request: web.Request) -> web.Response:
    """GET /v1/signing-requests?state=pending."""
    principal = principal_of(request)
    state = request.query.get("state")
    if state is not None and state not in _STATES:
        raise InvalidField(f"'state' must be one of {', '.join(sorted(_STATES))}", field="state")
    found = await request.app[CODESIGN].list(state=state)
    return json_response(
        {
            "signing_requests": [
                request_view(record, approval)
                for record, approval in found
                if visible(principal, record, approval)
            ]
        }
    )


async def get_request(request: web.Request) -> web.Response:
    """GET /v1/signing-requests/{id}."""
    principal = principal_of(request)
    record, approval = await request.app[CODESIGN].get(request.match_info["id"])
    if not visible(principal, record, approval):
        raise UnknownSigningRequest(f"no signing request {record.id!r}")
    return json_response(request_view(record, approval))


async def _vote(request: web.Request, decision: Decision) -> web.Response:
    principal = principal_of(request)
    codesign = request.app[CODESIGN]
    await codesign.check_voter(request.match_info["id"], principal)  # 404/403 before the body
    comment = await read_comment(request)
    record, approval = await codesign.vote(request.match_info["id"], principal, decision, comment)
    return json_response(request_view(record, approval))


async def approve(request: web.Request) -> web.Response:
    """POST /v1/signing-requests/{id}/approve: the approvals engine's approve."""
    return await _vote(request, Decision.APPROVE)


async def deny(request: web.Request) -> web.Response:
    """POST /v1/signing-requests/{id}/deny (a comment is required)."""
    return await _vote(request, Decision.DENY)


async def key_pem(request: web.Request) -> web.Response:
    """GET /v1/rings/{ring}/keys/{kid}.pem: a published key of the ring, as SPKI PEM."""
    view = request.app[SERVICE].view(request.match_info["ring"])
    kid = request.match_info["kid"]
    record = next((r for r in published(view.records) if r.kid == kid), None)
    if record is None:
        raise UnknownKey(f"ring {view.policy.name!r} publishes no key {kid!r}")
    key = public_key_from_jwk(Jwk(**record.jwk))  # type: ignore[typeddict-item]
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # A kid is the key's thumbprint, so these bytes never change; the key may leave the JWKS,
    # so caches keep it no longer than they keep the JWKS.
    headers = {"Cache-Control": f"public, max-age={view.policy.jwks_max_age}"}
    return web.Response(body=pem, content_type=PEM_CONTENT_TYPE, headers=headers)


def add_routes(app: web.Application) -> None:
    """Register the signing-request and key PEM endpoints."""
    routing.post(app, "/v1/signing-requests", create_request)
    routing.get(app, "/v1/signing-requests", list_requests)
    routing.get(app, "/v1/signing-requests/{id}", get_request)
    routing.post(app, "/v1/signing-requests/{id}/approve", approve)
    routing.post(app, "/v1/signing-requests/{id}/deny", deny)
    routing.get(app, "/v1/rings/{ring}/keys/{kid}.pem", key_pem)
