"""Strict JSON reading and deterministic writing for the attestation formats (RFC 8259, RFC 7493).

Reading follows I-JSON (RFC 7493): the text is UTF-8 (§2.1), object member names are unique
(§2.3), and numbers are finite (§2.2; ``NaN`` and ``Infinity`` are not JSON at all). Duplicate
names matter most: two parsers that pick different duplicates would see different statements
under one signature.

Writing is compact (no insignificant whitespace), UTF-8 without ``\\u`` escapes for non-ASCII
text, and in the member order the caller gives, so the same value always gives the same bytes:
signatures cover these exact bytes.

The ``expect_*`` accessors are how every parser in this package reads a decoded value: each
raises :class:`AttestError` naming the member path (``"statement: subject[0].digest"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Final

from attest.errors import AttestError

__all__ = [
    "dumps",
    "expect_int",
    "expect_list",
    "expect_members",
    "expect_object",
    "expect_str",
    "kind",
    "loads",
]


def loads(data: bytes, what: str) -> object:
    """Parse ``data`` as I-JSON; ``what`` names the document in errors."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AttestError(f"{what}: expected JSON bytes, not {kind(data)}")
    try:
        # RFC 8259 §8.1 / RFC 7493 §2.1: UTF-8, and no byte order mark.
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AttestError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if text.startswith("\ufeff"):
        raise AttestError(f"{what}: JSON text must not start with a byte order mark")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_members,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise AttestError(
            f"{what}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise AttestError(f"{what}: not accepted: nested too deeply") from exc
    except _DuplicateMember as exc:
        raise AttestError(f"{what}: {exc.args[0]}") from exc
    except ValueError as exc:  # an integer past the interpreter's digit limit, an infinity
        raise AttestError(f"{what}: not accepted: {exc}") from exc
    # RFC 7493 §2.1: strings are Unicode text; a lone surrogate escape ("\ud800") is not.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AttestError(f"{what}: contains a string that is not valid Unicode text") from exc
    return value


def dumps(value: object, what: str) -> bytes:
    """Return ``value`` as compact UTF-8 JSON in its own member order; ``what`` names it in errors.

    Raises :class:`AttestError` for NaN/Infinity and strings that are not valid Unicode text,
    ``TypeError`` for values that are not JSON at all (a caller's bug, not bad input).
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AttestError(f"{what}: contains a string that is not valid Unicode text") from exc
    except ValueError as exc:
        raise AttestError(f"{what}: not JSON: {exc}") from exc


def _finite_float(text: str) -> float:
    """RFC 7493 §2.2: a number the reader can represent (1e400 would read as infinity)."""
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


class _DuplicateMember(Exception):
    pass


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            # RFC 7493 §2.3: "Objects in I-JSON messages MUST NOT have members with duplicate
            # names."
            raise _DuplicateMember(f"duplicate member name {name!r}")
        result[name] = value
    return result


def _no_constant(name: str) -> object:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


# bool before int: a JSON true is a Python int too.
_KINDS: Final[tuple[tuple[type, str], ...]] = (
    (type(None), "null"),
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def kind(value: object) -> str:
    """Name the JSON type of ``value`` for an error message."""
    for python_type, name in _KINDS:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def expect_object(value: object, what: str) -> dict[str, object]:
    """Return ``value`` if it is a JSON object, else raise :class:`AttestError`."""
    if not isinstance(value, dict):
        raise AttestError(f"{what}: expected an object, not {kind(value)}")
    return value


def expect_members(
    value: object,
    what: str,
    *,
    required: Collection[str],
    optional: Collection[str] = (),
) -> dict[str, object]:
    """Return ``value`` as an object with all ``required`` and no unknown members."""
    obj = expect_object(value, what)
    missing = [name for name in required if name not in obj]
    if missing:
        raise AttestError(f"{what}: missing member {missing[0]!r}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise AttestError(f"{what}: unknown member {unknown[0]!r}")
    return obj


def expect_str(value: object, what: str, *, empty: bool = False) -> str:
    """Return ``value`` if it is a string (non-empty unless ``empty``), else raise."""
    if not isinstance(value, str):
        raise AttestError(f"{what}: expected a string, not {kind(value)}")
    if not value and not empty:
        raise AttestError(f"{what}: must not be empty")
    return value


def expect_int(value: object, what: str, *, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer ≥ ``minimum`` (booleans are not), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AttestError(f"{what}: expected an integer, not {kind(value)}")
    if value < minimum:
        raise AttestError(f"{what}: must be at least {minimum}, not {value}")
    return value


def expect_list(value: object, what: str, *, empty: bool = False) -> list[object]:
    """Return ``value`` if it is an array (non-empty unless ``empty``), else raise."""
    if not isinstance(value, list):
        raise AttestError(f"{what}: expected an array, not {kind(value)}")
    if not value and not empty:
        raise AttestError(f"{what}: must not be empty")
    return value
