"""RFC 9457 problem details: the one place a ``SignerError`` becomes an HTTP response.

Unexpected exceptions become a bare 500 whose body says nothing about internals; the traceback
goes to the log only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from signer.context import AUDIT, METRICS, principal_name
from signer.errors import (
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SignerError,
    Unauthenticated,
)
from signer.logs import new_request_id, request_id

if TYPE_CHECKING:
    from signer.metrics import Metrics

log = logging.getLogger("signer.http")

PROBLEM_TYPE_PREFIX = "urn:signer:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_body(exc: SignerError) -> dict[str, Any]:
    """The problem document of ``exc``."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + exc.code,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "code": exc.code,
    }
    if exc.field is not None:
        body["field"] = exc.field
    current = request_id.get()
    if current is not None:
        body["request_id"] = current
    return body


def _render(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(
        status=body["status"],
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
    if body["status"] == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="signer"'
    return response


def problem_response(exc: SignerError) -> web.Response:
    """Render ``exc`` as ``application/problem+json``."""
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return _render(problem_body(exc), headers)


_ROUTING_ERRORS: dict[int, SignerError] = {
    404: NotFound("no such resource"),
    405: MethodNotAllowed("this resource does not support the method"),
    413: PayloadTooLarge("the request body is over the size limit"),
}


def _http_exception_body(exc: web.HTTPException) -> dict[str, Any]:
    known = _ROUTING_ERRORS.get(exc.status)
    if known is not None:
        return problem_body(known)
    code = f"http_{exc.status}"
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": exc.reason,
        "status": exc.status,
        "detail": exc.reason,
        "code": code,
    }
    current = request_id.get()
    if current is not None:
        body["request_id"] = current
    return body


# Refusals of who the caller is or what it may do: each is audited (DESIGN.md: Audit).
AUDITED_REFUSALS = (Unauthenticated, Forbidden, RateLimited)


async def _audit_refusal(request: web.Request, exc: SignerError) -> None:
    log.info(
        "refused %s %s",
        request.method,
        request.path,
        extra={"code": exc.code, "principal": principal_name(request)},
    )
    audit = request.app.get(AUDIT)
    if audit is None:
        return
    try:
        await audit.record(
            actor=principal_name(request),
            action="authz.deny",
            target=request.path,
            outcome="denied",
            details={"method": request.method, "code": exc.code, "detail": exc.detail},
        )
    except SignerError:
        log.exception("could not audit a refused request to %s", request.path)


def serving(handler: Handler, route: str, metrics: Metrics | None) -> Handler:
    """``handler`` run with a request id (logs, header, problems), errors rendered as problems,
    and its time observed under ``route`` (the path it was registered with) and status.

    Every route's handler is wrapped in this (``signer.routing``) rather than run through an
    aiohttp middleware: an application with any middleware pays two extra calls per request
    (aiohttp adds one of its own), a third of the JWKS hot path (docs/performance.md). The
    route and the metrics are bound here, once, not looked up per request.
    """
    observe = _observer(route, metrics)

    async def served(request: web.Request) -> web.StreamResponse:
        rid = new_request_id(request.headers.get("X-Request-Id"))
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 500
        try:
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 -- every error becomes a problem response
                response = await _error_response(request, exc)
        except web.HTTPException as exc:  # a redirect or the like, on its way to aiohttp
            status = exc.status
            raise
        else:
            status = response.status
            response.headers["X-Request-Id"] = rid
            return response
        finally:
            observe(request, status, start, rid)
            request_id.reset(token)

    return _named(served, handler)


PlainHandler = Callable[[web.Request], web.StreamResponse]


def serving_plain(handler: PlainHandler, route: str, metrics: Metrics | None) -> Handler:
    """``serving`` for a plain function: one that answers without awaiting or logging, such as
    the JWKS documents, the public hot path.

    The same request id header, problems and metrics, at less cost per request: no coroutine of
    its own, and the request id enters the logging context only when the handler fails (a
    plain handler logs nothing on its way to an answer, so no log line can miss it).
    """
    observe = _observer(route, metrics)

    async def served(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        rid = new_request_id(request.headers.get("X-Request-Id"))
        try:
            response = handler(request)
        except Exception as exc:  # noqa: BLE001 -- every error becomes a problem response
            token = request_id.set(rid)
            try:
                response = await _error_response(request, exc)
            except web.HTTPException as redirect:
                observe(request, redirect.status, start, rid)
                raise
            finally:
                request_id.reset(token)
        response.headers["X-Request-Id"] = rid
        observe(request, response.status, start, rid)
        return response

    return _named(served, handler)


def _named(served: Handler, handler: Callable[..., Any]) -> Handler:
    served.__name__ = getattr(handler, "__name__", "handler")
    served.__doc__ = handler.__doc__
    return served


def _observer(
    route: str, metrics: Metrics | None
) -> Callable[[web.Request, int, float, str], None]:
    """Time a request that started at ``start`` into ``route``'s histogram, by method and
    status, and log it at debug level with its request id (``serving_plain`` has not put that
    in the logging context)."""

    def observe(request: web.Request, status: int, start: float, rid: str) -> None:
        elapsed = time.perf_counter() - start
        if metrics is not None:
            metrics.request_timer(request.method, route, status).observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request",
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )

    return observe


async def _error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem response for what a handler raised; aiohttp's redirects (an
    ``HTTPException`` under 400) are raised on for aiohttp to send as they are."""
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _http_problem(exc)
    return await _problem_for(request, exc)


# The catch-all route's path (signer.routing): requests it answers are labelled UNMATCHED.
FALLBACK_PATH = "/{unmatched:.*}"
FALLBACK_CANONICAL = "/{unmatched}"  # how aiohttp names that resource
UNMATCHED = "unmatched"


async def _problem_for(request: web.Request, exc: Exception) -> web.Response:
    """The problem response for an error a handler raised (audited when it is a refusal)."""
    if not isinstance(exc, SignerError):
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return problem_response(SignerError("the signer failed to handle this request"))
    if exc.status >= 500:
        log.warning("request failed: %s %s: %s", request.method, request.path, exc.code)
    if isinstance(exc, RateLimited) and METRICS in request.app:
        request.app[METRICS].rate_limited.labels(principal_name(request)).inc()
    if isinstance(exc, AUDITED_REFUSALS):
        await _audit_refusal(request, exc)
    return problem_response(exc)


def _http_problem(exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx/5xx (no route, wrong method, body too large) as a problem."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return _render(_http_exception_body(exc), headers)
