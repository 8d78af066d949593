"""Strict JSON bodies."""

from __future__ import annotations

import json

import pytest

from signer.bodies import MAX_DEPTH, parse_json
from signer.errors import MalformedJson


def test_parses_an_object() -> None:
    assert parse_json(b'{"claims": {"sub": "a"}}') == {"claims": {"sub": "a"}}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"claims": {"sub": "a", "sub": "b"}}',
        b'{"ttl": NaN}',
        b'{"ttl": Infinity}',
        b"{",
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"claims": {"x": 1e400}}',
        b'{"claims": {"x": -1.5e999}}',
        b'{"claims": {"x": ' + b"9" * 5000 + b"}}",
        b'{"claims": {"a": ' + b"[" * 973 + b"]" * 973 + b"}}",
        b'{"claims": {"a": ' + b"[" * 64 + b"]" * 64 + b"}}",
    ],
    ids=[
        "duplicate",
        "nan",
        "infinity",
        "truncated",
        "not-utf8",
        "deep",
        "overflowing-float",
        "overflowing-negative-float",
        "too-many-digits",
        "deeper-than-the-encoder-goes",
        "one-level-too-deep",
    ],
)
def test_refuses_what_is_not_strict_json(raw: bytes) -> None:
    with pytest.raises(MalformedJson):
        parse_json(raw)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (rb'{"reason": "\ud800"}', "reason"),
        (rb'{"subjects": [{"name": "a\udc00b"}]}', "subjects[0].name"),
        (rb'{"claims": {"\ud800": 1}}', "claims"),
        (rb'["ok", "\udfff"]', "[1]"),
        (rb'"\ud800"', None),
    ],
    ids=["value", "nested", "member-name", "list-item", "top-level"],
)
def test_refuses_a_lone_surrogate_anywhere_naming_where(raw: bytes, field: str | None) -> None:
    """A string that cannot be encoded as UTF-8 never reaches the audit log or a statement."""
    with pytest.raises(MalformedJson, match="not Unicode text") as refused:
        parse_json(raw)
    assert refused.value.field == field


def test_accepts_escaped_surrogate_pairs_and_escaped_backslashes() -> None:
    assert parse_json(rb'{"a": "\ud83d\ude00", "b": "\\ud800"}') == {"a": "😀", "b": "\\ud800"}


def test_accepts_nesting_up_to_the_limit_and_brackets_inside_strings() -> None:
    nested = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_json(nested)["a"]
    brackets = b'{"a": "' + b"[{" * 200 + b'", "b": [1.5, 2e10, 123456789012345678901234567890]}'
    assert parse_json(brackets)["b"] == [1.5, 2e10, 123456789012345678901234567890]


def test_whatever_is_accepted_can_be_encoded_again() -> None:
    """The signer writes claims and predicates back out as JSON (often after a write): a body
    it accepts must never fail there."""
    deepest = b'{"a": ' + b'{"b": ' * (MAX_DEPTH - 2) + b"1.5e300" + b"}" * (MAX_DEPTH - 2) + b"}"
    document = parse_json(deepest)
    assert json.loads(json.dumps(document, allow_nan=False)) == document
