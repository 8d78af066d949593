"""Reading JSON request bodies: media type, size limit, strict JSON.

Strict means: no duplicate member names (two ``sub`` claims must not reach a token), no
``NaN``/``Infinity`` (neither as a literal nor as a number too large for a float, such as
``1e400``), UTF-8 only (RFC 8259 §8.1), no string that is not Unicode text: a ``\ud800`` escape
decodes to a lone surrogate, which no later UTF-8 encoding (the audit log, a signed statement)
accepts (I-JSON, RFC 7493 §2.1), and no nesting deeper than ``MAX_DEPTH``. Whatever is accepted
can therefore be written back out as JSON (a token's claims, a statement's predicate): a body
that could not be would otherwise fail only after something was written.
"""

from __future__ import annotations

import json
import math
import re
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


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise MalformedJson(f"the number {shown} is too large: it has no finite value")
    return value


# One decoder for every body: ``json.loads`` with hooks builds a decoder (and its scanner) per
# call, which cost more than parsing a small body.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite
)

# Far deeper than any claim set or predicate nests, and far below where Python's JSON encoder
# runs out of stack (a few levels under its parser's limit): what is accepted can be encoded.
MAX_DEPTH = 64
# A string (skipped whole, so its brackets do not count) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(text: str) -> bool:
    """Whether the (valid) JSON ``text`` nests deeper than ``MAX_DEPTH``."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # fewer openings than the limit: no need to look closer
    depth = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Where a value sits, as a parent pointer: (parent, member name or index), None at the top.
_Where = tuple[Any, str | int] | None


def _path(where: _Where) -> str:
    parts: list[str] = []
    while where is not None:
        where, part = where
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(reversed(parts)).removeprefix(".")


def _not_text(where: _Where, *, member_name: bool) -> MalformedJson:
    path = _path(where)
    if member_name:
        what = f"a member name in {path}" if path else "a member name"
    else:
        what = path or "the body"
    detail = f"{what} is not Unicode text (a lone surrogate escape)"
    return MalformedJson(detail, field=path or None)


def _check_text(document: Any) -> None:
    """Raise ``MalformedJson`` naming the member or item that holds a lone surrogate."""
    # Iterative, with parent pointers: constant memory per value however deep the document.
    stack: list[tuple[_Where, Any]] = [(None, document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _is_text(value):
                raise _not_text(where, member_name=False)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _is_text(key):
                    raise _not_text(where, member_name=True)
                stack.append(((where, key), item))
        elif isinstance(value, list):
            stack.extend(((where, i), item) for i, item in enumerate(value))


def parse_json(raw: bytes) -> Any:
    """Parse strict JSON from ``raw``, raising ``MalformedJson`` with the position of a fault."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("the request body is not UTF-8") from None
    try:
        document = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MalformedJson("the request body nests too deeply") from None
    except ValueError:  # an integer past int()'s digit limit (4,300)
        raise MalformedJson("a number in the request body has too many digits") from None
    if _too_deep(text):
        raise MalformedJson(f"the request body nests deeper than {MAX_DEPTH} levels")
    if "\\u" in text:  # valid UTF-8 holds no surrogates; only a \u escape can make one
        _check_text(document)
    return document


async def read_json(request: web.Request, *, max_bytes: int) -> Any:
    """Read the request's JSON body within ``max_bytes``."""
    if request.content_type not in JSON_TYPES or "Content-Type" not in request.headers:
        # aiohttp reads a missing header as application/octet-stream; say what was sent.
        sent = request.headers.get("Content-Type", "none")
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {sent!r}")
    if (request.charset or "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType(
            f"expected a JSON body in UTF-8 (RFC 8259 §8.1), got charset {request.charset!r}"
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
