"""What every handler shares: the typed application keys and small response helpers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from signer.auth import Authenticator, Principal
from signer.keeper import Keeper
from signer.service import SignerService
from signer.settings import Settings

SERVICE = web.AppKey("service", SignerService)
KEEPER = web.AppKey("keeper", Keeper)
AUTH = web.AppKey("auth", Authenticator)
SETTINGS = web.AppKey("settings", Settings)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def principal_of(request: web.Request) -> Principal:
    """Authenticate the request's bearer token (``Unauthenticated`` if it has none)."""
    return request.app[AUTH].authenticate(request.headers.get("Authorization"))
