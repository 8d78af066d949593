"""What every handler shares: the typed application keys and small response helpers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from signer.approvals.shell import Approvals
from signer.audit.writer import AuditWriter
from signer.auth import Authenticator, Principal
from signer.codesign.shell import CodeSigning
from signer.errors import Unauthenticated
from signer.keeper import Keeper
from signer.metrics import Metrics
from signer.ratelimit import RateLimiter
from signer.service import SignerService
from signer.settings import Settings
from signer.subjects import certificate_subject

SERVICE = web.AppKey("service", SignerService)
KEEPER = web.AppKey("keeper", Keeper)
AUTH = web.AppKey("auth", Authenticator)
SETTINGS = web.AppKey("settings", Settings)
LIMITER = web.AppKey("limiter", RateLimiter)
AUDIT = web.AppKey("audit", AuditWriter)
APPROVALS = web.AppKey("approvals", Approvals)
CODESIGN = web.AppKey("codesign", CodeSigning)
METRICS = web.AppKey("metrics", Metrics)
PRINCIPAL = web.RequestKey("principal", str)  # the authenticated caller's name, for refusals


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def client_cert_subject(request: web.Request) -> str | None:
    """The RFC 4514 subject of the client certificate the TLS layer verified, if any."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return certificate_subject(der)


def principal_name(request: web.Request) -> str:
    """The authenticated caller of ``request``, or ``anonymous``."""
    name: str = request.get(PRINCIPAL, "anonymous")
    return name


def principal_of(request: web.Request) -> Principal:
    """Authenticate the caller and spend one request of its rate limit.

    Two ``Authorization`` headers are refused: a proxy that reads the last one would take the
    caller for someone other than the signer does (which reads the first).
    """
    authorization = request.headers.getall("Authorization", None)
    if authorization is not None and len(authorization) > 1:
        raise Unauthenticated("send one Authorization header, not several")
    principal = request.app[AUTH].authenticate(
        authorization[0] if authorization else None, cert_subject=client_cert_subject(request)
    )
    request[PRINCIPAL] = principal.name
    request.app[LIMITER].check(principal.name)
    return principal
