"""Duration strings of the configuration."""

from __future__ import annotations

import pytest

from signer.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("10m", 600), ("12h", 43200), ("30d", 2592000), (7, 7), (" 2 h ", 7200)],
)
def test_parses_units(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "1w", "-1s", "0s", 0, -3, True, 1.5, "1.5h"])
def test_refuses_non_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
