"""The baseline: a plain aiohttp app doing the least a server can do for the same requests.

It runs as its own process, started like ``signer serve`` (``web.run_app`` on the same kind of
event loop, ``--event-loop``, no access log), so the ratio to it measures what the signer adds on
top of aiohttp on this machine:

* ``GET /jwks.json`` answers fixed bytes as long as the signer's JWKS, with the same kind of
  ``ETag`` and ``Cache-Control`` headers;
* ``POST /sign`` reads and parses the JSON body and answers a small JSON object.

Run: ``python -m scripts.benchlib.baseline --port N --jwks-bytes SIZE [--event-loop KIND]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from aiohttp import web

from signer.eventloop import DEFAULT_EVENT_LOOP, EVENT_LOOPS, new_event_loop

GET_PATH = "/jwks.json"
POST_PATH = "/sign"
MAX_BODY_BYTES = 65536 + 1024  # as the signer's default server.max_body_bytes plus slack
_ETAG = '"baseline-0000000000000000000000000000000000000000000"'
_CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=30"


def jwks_like_body(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes (at least 12)."""
    if size < 12:
        raise ValueError(f"the body must be at least 12 bytes, got {size}")
    prefix, suffix = b'{"keys":["', b'"]}'
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


def create_app(jwks_bytes: int) -> web.Application:
    """The baseline app; ``jwks_bytes`` is the size of the signer's JWKS body."""
    body = jwks_like_body(jwks_bytes)

    async def get(_request: web.Request) -> web.Response:
        headers = {"ETag": _ETAG, "Cache-Control": _CACHE_CONTROL}
        return web.Response(body=body, content_type="application/jwk-set+json", headers=headers)

    async def post(request: web.Request) -> web.Response:
        parsed = json.loads(await request.read())
        claims = parsed.get("claims", {}) if isinstance(parsed, dict) else {}
        answer = {"ok": True, "claims": len(claims)}
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get(GET_PATH, get)
    app.router.add_post(POST_PATH, post)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the baseline on 127.0.0.1 until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwks-bytes", type=int, required=True)
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default=DEFAULT_EVENT_LOOP)
    args = parser.parse_args(argv)
    web.run_app(
        create_app(args.jwks_bytes),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        handle_signals=True,
        loop=new_event_loop(args.event_loop),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
