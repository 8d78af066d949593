"""Reading JSON request bodies: media type, size limit, strict JSON.

Strict means: no duplicate member names (two ``sub`` claims must not reach a token), no
``NaN``/``Infinity``, and UTF-8 only (RFC 8259 §8.1).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from signer.errors import MalformedJson, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = frozenset({"application/json"})


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedJson(f"duplicate member {key!r} in JSON object")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise MalformedJson(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Parse strict JSON from ``raw``, raising ``MalformedJson`` with the position of a fault."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("the request body is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MalformedJson("the request body nests too deeply") from None


async def read_json(request: web.Request, *, max_bytes: int) -> Any:
    """Read the request's JSON body within ``max_bytes``."""
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {request.content_type or 'none'!r}"
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the request body is over the limit of {max_bytes} bytes")
    # Chunked bodies carry no Content-Length: count while reading, stop one byte past the limit.
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(max_bytes + 1 - total):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"the request body is over the limit of {max_bytes} bytes")
    raw = b"".join(chunks)
    if not raw:
        raise MalformedJson("the request body is empty")
    return parse_json(raw)
