"""Every route goes through ``problems.serve``: no handler can skip problems, ids or timing."""

from __future__ import annotations

from pathlib import Path

from signer.app import create_app
from tests.signer.test_artifact_rings import load


def test_every_route_handler_is_wrapped_and_the_catch_all_is_last(tmp_path: Path) -> None:
    app = create_app(load(tmp_path))

    routes = list(app.router.routes())
    unwrapped = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in routes
        if route.handler.__qualname__ != "wrap.<locals>.wrapped"
    ]
    assert unwrapped == []
    last = routes[-1].resource
    assert last is not None
    assert last.canonical == "/{unmatched}"
