"""The HTTP application: ``create_app`` wires settings, HSM, store and handlers together.

Handlers parse, call the service and render; ``signer.problems.serving`` wraps every handler
(``signer.routing``) and renders its errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from jwks.document import etag_matches
from jwks.thumbprint import KeyId
from signer import admin, routing
from signer.approvals import http as approvals_http
from signer.approvals.rules import ApprovalRequest
from signer.approvals.shell import Approvals
from signer.audit import http as audit_http
from signer.audit.writer import AuditWriter
from signer.auth import Authenticator, require
from signer.bodies import read_json
from signer.codesign import http as codesign_http
from signer.codesign.shell import OPERATION as SIGNING_OPERATION
from signer.codesign.shell import CodeSigning
from signer.context import (
    APPROVALS,
    AUDIT,
    AUTH,
    CODESIGN,
    KEEPER,
    LIMITER,
    METRICS,
    SERVICE,
    SETTINGS,
    json_response,
    principal_of,
)
from signer.hsm.base import KeyBackend
from signer.keeper import Keeper
from signer.metrics import CONTENT_TYPE, InstrumentedBackend, Metrics
from signer.ratelimit import RATE_LIMIT_FILE, RateLimiter
from signer.rings import ref_of
from signer.service import Clock, SignedJwt, SignerService
from signer.settings import Settings
from signer.store.base import StateStore
from signer.tokens import JwtRequest, parse_batch

log = logging.getLogger("signer.http")


JWKS_CONTENT_TYPE = "application/jwk-set+json"


def open_backend(settings: Settings) -> KeyBackend:
    """The PKCS#11 backend named by the settings."""
    from signer.hsm.pkcs11 import Pkcs11Backend  # noqa: PLC0415 -- loads the module lazily

    if settings.hsm.softhsm2_conf is not None:
        # SoftHSM reads its config location from the environment when the module initialises.
        os.environ["SOFTHSM2_CONF"] = str(settings.hsm.softhsm2_conf)
    return Pkcs11Backend(settings.hsm.module, settings.hsm.token_label, settings.hsm.pin)


def open_store(settings: Settings) -> StateStore:
    """The state store named by the settings (SQLite or Redis, by its URL)."""
    from signer.store import open_store as open_named  # noqa: PLC0415 -- adapters load lazily

    return open_named(settings.store)


async def _timed_sign(
    request: web.Request, ring: str, jwt_requests: Sequence[JwtRequest], actor: str
) -> list[SignedJwt]:
    """Sign and audit; each token's latency is observed (the whole call's, for a batch)."""
    service = request.app[SERVICE]
    start = time.perf_counter()
    signed = await service.sign_jwts(ring, jwt_requests, actor=actor)
    elapsed = time.perf_counter() - start
    histogram = request.app[METRICS].sign.labels(ring, signed[0].alg)
    for _ in signed:
        histogram.observe(elapsed)
    return signed


async def sign_jwt(request: web.Request) -> web.Response:
    """POST /v1/rings/{ring}/jwt: sign the posted claims with the ring's active key."""
    principal = principal_of(request)
    service = request.app[SERVICE]
    ring = request.match_info["ring"]
    view = service.view(ring)
    require(principal, f"jwt:sign:{ring}")
    body = await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)
    jwt_request = JwtRequest.parse(body, token_max_ttl=view.policy.token_max_ttl)
    (signed,) = await _timed_sign(request, ring, [jwt_request], principal.name)
    return json_response(
        {"jwt": signed.jwt, "kid": signed.kid, "alg": signed.alg, "exp": signed.exp}
    )


async def sign_jwt_batch(request: web.Request) -> web.Response:
    """POST /v1/rings/{ring}/jwt:batch: up to 100 claim sets, each signed and audited."""
    principal = principal_of(request)
    service = request.app[SERVICE]
    ring = request.match_info["ring"]
    view = service.view(ring)
    require(principal, f"jwt:sign:{ring}")
    body = await read_json(request, max_bytes=request.app[SETTINGS].server.max_body_bytes)
    requests = parse_batch(body, token_max_ttl=view.policy.token_max_ttl)
    signed = await _timed_sign(request, ring, requests, principal.name)
    return json_response(
        {"tokens": [{"jwt": s.jwt, "kid": s.kid, "alg": s.alg, "exp": s.exp} for s in signed]}
    )


def _jwks_response(request: web.Request, ring: str) -> web.Response:
    service = request.app[SERVICE]
    view = service.view(ring)
    headers = view.cache_headers(int(service.clock()))
    # RFC 9110 §5.3: repeated If-None-Match lines are one list.
    tags = request.headers.getall("If-None-Match", None)
    if tags is not None and etag_matches(",".join(tags), view.jwks.etag):
        request.app[METRICS].jwks_served(ring, 304)
        return web.Response(status=304, headers=headers)
    request.app[METRICS].jwks_served(ring, 200)
    return web.Response(body=view.jwks.body, content_type=JWKS_CONTENT_TYPE, headers=headers)


def default_jwks(request: web.Request) -> web.Response:
    """GET /.well-known/jwks.json: the default ring's JWKS (a plain handler, see routing)."""
    return _jwks_response(request, request.app[SETTINGS].server.default_ring)


def ring_jwks(request: web.Request) -> web.Response:
    """GET /v1/rings/{ring}/jwks.json (a plain handler, see routing)."""
    return _jwks_response(request, request.match_info["ring"])


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the HSM and the store both answer."""
    service = request.app[SERVICE]
    checks: dict[str, str] = {}
    for name, adapter in (("hsm", service.backend), ("store", service.store)):
        try:
            await adapter.aping()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 -- any failure means not ready
            checks[name] = getattr(exc, "code", "error")
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context: HTTPS when configured, client certificates when a CA is set."""
    server = settings.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server.tls_cert, server.tls_key)
    if server.client_ca is not None:
        # Optional, not required: principals without a certificate still use bearer tokens;
        # a certificate that is presented must chain to the CA or the handshake fails.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cafile=server.client_ca)
    return context


def create_app(  # noqa: PLR0915 -- the one wiring function: a line per adapter and route
    settings: Settings,
    *,
    backend: KeyBackend | None = None,
    store: StateStore | None = None,
    clock: Clock = time.time,
    shared_dir: Path | None = None,
    worker: int = 0,
) -> web.Application:
    """Build the application; HSM and store open on start-up and close on clean-up.

    ``shared_dir`` is where the workers of a ``[server] workers`` set share their metrics
    (``Metrics.share``) and their rate-limit buckets (``SharedBuckets``); ``worker`` is this
    one's number.
    """
    metrics = Metrics()
    if shared_dir is not None:
        metrics.share(shared_dir, worker)
    limiter = RateLimiter(
        settings.principals,
        clock,
        shared=None if shared_dir is None else shared_dir / RATE_LIMIT_FILE,
    )
    app = web.Application(
        # aiohttp's own cap sits above ours so our limit answers first with a precise problem.
        client_max_size=settings.server.max_body_bytes + 1024,
    )
    app[SETTINGS] = settings
    app[AUTH] = Authenticator(settings.principals)
    app[LIMITER] = limiter
    app[METRICS] = metrics

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        hsm = InstrumentedBackend(
            backend if backend is not None else open_backend(settings), metrics
        )
        state = store if store is not None else open_store(settings)
        audit = AuditWriter(
            state, clock=clock, sink=settings.audit.sink, on_commit=metrics.observe_commit
        )
        service = SignerService(settings, backend=hsm, store=state, clock=clock, audit=audit)
        keeper = Keeper(service, audit, shared=settings.server.workers > 1)
        groups = {group.name: frozenset(group.members) for group in settings.groups}
        approvals = Approvals(
            state, audit, clock=clock, members=lambda group: groups.get(group, frozenset())
        )
        register_key_operations(approvals, keeper)
        codesign = CodeSigning(
            settings, service=service, approvals=approvals, audit=audit, clock=clock
        )
        approvals.register(SIGNING_OPERATION, codesign.run)  # signs once, at quorum
        audit.publish_when(lambda: keeper.leader)
        try:
            await audit.start()
            await keeper.start()  # the leader makes the audit key and brings the rings up
            audit_key = await service.audit_key(create=False)
            if audit_key is not None:
                audit.use_checkpoint_key(audit_key.kid, partial(hsm.sign, ref_of(audit_key)))
            await approvals.resume()
            app[SERVICE] = service
            app[KEEPER] = keeper
            app[AUDIT] = audit
            app[APPROVALS] = approvals
            app[CODESIGN] = codesign
            metrics.watch(service, keeper)
            tasks = [
                asyncio.create_task(keeper.run(), name="lifecycle"),
                asyncio.create_task(metrics.publish_forever(), name="metrics"),
                asyncio.create_task(
                    approvals.retry_forever(when=lambda: keeper.leader), name="approvals"
                ),
            ]
            yield
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await audit.checkpoint()
        finally:
            await audit.aclose()
            await hsm.aclose()
            await state.aclose()
            limiter.close()

    app.cleanup_ctx.append(lifecycle)
    routing.get_plain(app, "/.well-known/jwks.json", default_jwks)
    routing.get_plain(app, "/v1/rings/{ring}/jwks.json", ring_jwks)
    routing.post(app, "/v1/rings/{ring}/jwt", sign_jwt)
    routing.post(app, "/v1/rings/{ring}/jwt:batch", sign_jwt_batch)
    routing.get(app, "/healthz", healthz)
    routing.get(app, "/readyz", readyz)
    routing.get(app, "/metrics", metrics_endpoint)
    admin.add_routes(app)
    approvals_http.add_routes(app)
    codesign_http.add_routes(app)
    audit_http.add_routes(app)
    routing.add_fallback(app)  # last: it matches every path
    return app


def register_key_operations(approvals: Approvals, keeper: Keeper) -> None:
    """What an approved key destroy or reinstate does (idempotent, for resumed runs)."""

    async def destroy(request: ApprovalRequest) -> dict[str, Any]:
        record = await keeper.destroy_once(KeyId(request.target), actor="system")
        return {"kid": record.kid, "state": record.state.value}

    async def reinstate(request: ApprovalRequest) -> dict[str, Any]:
        record = await keeper.reinstate_once(KeyId(request.target), actor="system")
        return {"kid": record.kid, "state": record.state.value}

    approvals.register("key.destroy", destroy)
    approvals.register("key.reinstate", reinstate)
