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
