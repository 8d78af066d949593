"""Approvals over HTTP: list, read, approve and deny.

A principal sees a request it made, one its group may vote on, or any with ``audit:read``.
Who may vote is decided by the request's policy (members of its group then and now, never the
requester), and for a signing request as on its own route: the permission
``sign:approve:<profile>`` too, and a request the voter may not see is answered as missing.
"""

from __future__ import annotations

from aiohttp import web

from signer import routing
from signer.approvals.rules import ApprovalRequest, ApprovalState, Decision, UnknownApproval
from signer.approvals.rules import to_json as approval_json
from signer.auth import Principal
from signer.bodies import read_json
from signer.codesign.records import UnknownSigningRequest
from signer.codesign.shell import OPERATION as SIGNING_OPERATION
from signer.context import APPROVALS, CODESIGN, SETTINGS, json_response, principal_of
from signer.errors import InvalidField, MalformedJson, UnknownField

_STATES = frozenset(state.value for state in ApprovalState)


def _visible(principal: Principal, request: ApprovalRequest) -> bool:
    return (
        principal.name == request.requester
        or principal.name in request.policy.members
        or principal.allows("audit:read")
    )


async def list_approvals(request: web.Request) -> web.Response:
    """GET /v1/approvals?state=pending."""
    principal = principal_of(request)
    state = request.query.get("state")
    if state is not None and state not in _STATES:
        raise InvalidField(f"'state' must be one of {', '.join(sorted(_STATES))}", field="state")
    found = await request.app[APPROVALS].list(state=state)
    return json_response({"approvals": [approval_json(a) for a in found if _visible(principal, a)]})


async def get_approval(request: web.Request) -> web.Response:
    """GET /v1/approvals/{id}."""
    principal = principal_of(request)
    approval = await request.app[APPROVALS].get(request.match_info["id"])
    if not _visible(principal, approval):
        raise UnknownApproval(f"no approval {approval.id!r}")
    return json_response(approval_json(approval))


async def read_comment(request: web.Request) -> str:
    """The vote body ``{"comment": "..."}`` (optional, as is the body): the comment or ``""``.

    Shared by ``/v1/approvals/{id}/approve|deny`` and the signing-request shorthands.
    """
    if not request.body_exists:
        return ""
    body = await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)
    if not isinstance(body, dict):
        raise MalformedJson("the request body must be a JSON object")
    unknown = sorted(set(body) - {"comment"})
    if unknown:
        raise UnknownField(f"unknown field {unknown[0]!r}", field=unknown[0])
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise InvalidField("'comment' must be a string", field="comment")
    return comment


async def _vote(request: web.Request, decision: Decision) -> web.Response:
    """Vote as the caller. A signing request's approval is voted on through the code-signing
    shell, so this route asks what its own route asks (``sign:approve:<profile>``)."""
    principal = principal_of(request)
    approvals = request.app[APPROVALS]
    approval = await approvals.get(request.match_info["id"])
    if approval.operation == SIGNING_OPERATION:
        codesign = request.app[CODESIGN]
        try:
            await codesign.check_voter(approval.target, principal)  # 404/403 before the body
            comment = await read_comment(request)
            _, voted = await codesign.vote(approval.target, principal, decision, comment)
        except UnknownSigningRequest:
            raise UnknownApproval(f"no approval {approval.id!r}") from None
        if voted is None:  # the request lost its approval: not one this route can show
            raise UnknownApproval(f"no approval {approval.id!r}")
        return json_response(approval_json(voted))
    approvals.check_voter(approval, principal.name)  # 403 before the body
    comment = await read_comment(request)
    approval = await approvals.vote(
        approval.id, approver=principal.name, decision=decision, comment=comment
    )
    return json_response(approval_json(approval))


async def approve(request: web.Request) -> web.Response:
    """POST /v1/approvals/{id}/approve."""
    return await _vote(request, Decision.APPROVE)


async def deny(request: web.Request) -> web.Response:
    """POST /v1/approvals/{id}/deny (a comment is required)."""
    return await _vote(request, Decision.DENY)


def add_routes(app: web.Application) -> None:
    """Register the approval endpoints."""
    routing.get(app, "/v1/approvals", list_approvals)
    routing.get(app, "/v1/approvals/{id}", get_approval)
    routing.post(app, "/v1/approvals/{id}/approve", approve)
    routing.post(app, "/v1/approvals/{id}/deny", deny)
