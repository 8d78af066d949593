"""Strict JSON bodies."""

from __future__ import annotations

import pytest

from signer.bodies import parse_json
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
    ],
    ids=["duplicate", "nan", "infinity", "truncated", "not-utf8", "deep"],
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
