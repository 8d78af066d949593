"""Route registration: every handler wrapped by ``signer.problems.serving`` (or, for a plain
function, ``serving_plain``), and a catch-all.

The wrapper does what a middleware would (request id, problem rendering, timing) without the
per-request cost of aiohttp's middleware chain. Because aiohttp's own 404 and 405 answers never
reach a handler, a catch-all route, registered last, answers them as problems: it finds the
methods the path allows the way aiohttp's router does, and says 405 with ``Allow`` or 404.
"""

from __future__ import annotations

import re

from aiohttp import web

from signer.context import METRICS
from signer.problems import (
    FALLBACK_CANONICAL,
    FALLBACK_PATH,
    UNMATCHED,
    Handler,
    PlainHandler,
    serving,
    serving_plain,
)

_REGEX_PART = re.compile(r"\{[^}]*:")


def wrap(app: web.Application, handler: Handler, route: str) -> Handler:
    """``handler`` with a request id, problem rendering and timing (labelled ``route``), timed
    into the app's metrics (which are set before any route is registered)."""
    return serving(handler, route, app.get(METRICS))


def get(app: web.Application, path: str, handler: Handler) -> None:
    """Register a GET (and HEAD) route."""
    app.router.add_get(path, wrap(app, handler, _label(path)))


def get_plain(app: web.Application, path: str, handler: PlainHandler) -> None:
    """Register a GET (and HEAD) route answered by a plain function (``serving_plain``)."""
    app.router.add_get(path, serving_plain(handler, _label(path), app.get(METRICS)))


def post(app: web.Application, path: str, handler: Handler) -> None:
    """Register a POST route."""
    app.router.add_post(path, wrap(app, handler, _label(path)))


def _label(path: str) -> str:
    """The metrics label of a route: its path, which is aiohttp's canonical form without regexes."""
    if _REGEX_PART.search(path):
        raise ValueError(f"route {path!r}: a {{name:regex}} part needs its own metrics label")
    return path


def add_fallback(app: web.Application) -> None:
    """The catch-all, after every other route: unknown paths and methods get problems too."""
    app.router.add_route("*", FALLBACK_PATH, wrap(app, _no_route, UNMATCHED))


async def _no_route(request: web.Request) -> web.StreamResponse:
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == FALLBACK_CANONICAL:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound
