"""Every route goes through ``problems.serving`` (or ``serving_plain``): no handler can skip
problems, ids or timing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signer import routing
from signer.app import create_app
from signer.context import METRICS
from signer.errors import UnknownRing
from signer.logs import JsonFormatter, request_id
from signer.metrics import Metrics
from signer.problems import PlainHandler
from tests.signer.test_artifact_rings import load


def test_every_route_handler_is_wrapped_and_the_catch_all_is_last(tmp_path: Path) -> None:
    app = create_app(load(tmp_path))

    routes = list(app.router.routes())
    unwrapped = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in routes
        if route.handler.__qualname__
        not in ("serving.<locals>.served", "serving_plain.<locals>.served")
    ]
    assert unwrapped == []
    plain = {
        route.resource.canonical
        for route in routes
        if route.resource and route.handler.__qualname__ == "serving_plain.<locals>.served"
    }
    assert plain == {"/.well-known/jwks.json", "/v1/rings/{ring}/jwks.json"}
    last = routes[-1].resource
    assert last is not None
    assert last.canonical == "/{unmatched}"


def test_a_route_with_a_regex_part_is_refused_a_path_label() -> None:
    """Metrics label a route by its registered path, which must then be aiohttp's canonical."""

    async def handler(_request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="regex"):
        routing.get(web.Application(), "/v1/files/{name:.*}", handler)


def plain_app(handler: PlainHandler) -> tuple[web.Application, Metrics]:
    app = web.Application()
    metrics = app[METRICS] = Metrics()
    routing.get_plain(app, "/doc", handler)
    return app, metrics


def timed(metrics: Metrics, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "signer_http_request_duration_seconds_count",
        {"method": "GET", "route": "/doc", "status": status},
    )
    return value or 0.0


async def test_a_plain_handlers_answer_carries_a_request_id_and_is_timed() -> None:
    def handler(_request: web.Request) -> web.Response:
        assert request_id.get() is None  # the context is set only for a failure
        return web.Response(text="ok")

    app, metrics = plain_app(handler)
    async with TestClient(TestServer(app)) as client:
        offered = await client.get("/doc", headers={"X-Request-Id": "trace-7"})
        fresh = await client.get("/doc")

    assert offered.status == 200
    assert offered.headers["X-Request-Id"] == "trace-7"
    assert fresh.headers["X-Request-Id"] not in ("", "trace-7")
    assert timed(metrics, "200") == 2


class RequestIds(logging.Handler):
    """Notes the request id in context when each record is logged (as the JSON formatter does)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.ids.append(request_id.get())


async def test_a_plain_handlers_error_is_a_problem_logged_with_its_request_id() -> None:
    def unknown(_request: web.Request) -> web.Response:
        raise UnknownRing("no ring named 'x'")

    def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app, metrics = plain_app(unknown)
    routing.get_plain(app, "/broken", broken)
    seen = RequestIds()
    logging.getLogger("signer.http").addHandler(seen)
    async with TestClient(TestServer(app)) as client:
        missing = await client.get("/doc", headers={"X-Request-Id": "trace-8"})
        body = json.loads(await missing.read())
        failed = await client.get("/broken", headers={"X-Request-Id": "trace-9"})
        failed_body = json.loads(await failed.read())
    logging.getLogger("signer.http").removeHandler(seen)

    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    assert missing.headers["X-Request-Id"] == "trace-8"
    assert body["code"] == "unknown_ring"
    assert body["request_id"] == "trace-8"
    assert timed(metrics, "404") == 1
    assert failed.status == 500
    assert "a bug" not in json.dumps(failed_body)
    assert failed_body["request_id"] == "trace-9"
    assert seen.ids == ["trace-9"]  # the unexpected error's traceback, under its request id


async def test_a_plain_handlers_request_log_line_carries_its_request_id() -> None:
    """The debug line per request, rendered as the JSON formatter renders every line."""

    def handler(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app, _ = plain_app(handler)
    lines: list[str] = []
    capture = logging.Handler(logging.DEBUG)
    capture.setFormatter(JsonFormatter())
    capture.emit = lambda record: lines.append(capture.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("signer.http")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        async with TestClient(TestServer(app)) as client:
            await client.get("/doc", headers={"X-Request-Id": "trace-10"})
    finally:
        logger.removeHandler(capture)
        logger.setLevel(logging.NOTSET)

    requests = [json.loads(line) for line in lines if json.loads(line)["message"] == "request"]
    assert [(r["request_id"], r["route"], r["status"]) for r in requests] == [
        ("trace-10", "/doc", 200)
    ]
