"""Every route goes through ``problems.serving``: no handler can skip problems, ids or timing."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from signer import routing
from signer.app import create_app
from tests.signer.test_artifact_rings import load


def test_every_route_handler_is_wrapped_and_the_catch_all_is_last(tmp_path: Path) -> None:
    app = create_app(load(tmp_path))

    routes = list(app.router.routes())
    unwrapped = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in routes
        if route.handler.__qualname__ != "serving.<locals>.served"
    ]
    assert unwrapped == []
    last = routes[-1].resource
    assert last is not None
    assert last.canonical == "/{unmatched}"


def test_a_route_with_a_regex_part_is_refused_a_path_label() -> None:
    """Metrics label a route by its registered path, which must then be aiohttp's canonical."""

    async def handler(_request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="regex"):
        routing.get(web.Application(), "/v1/files/{name:.*}", handler)
