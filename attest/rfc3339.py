"""RFC 3339 timestamps in UTC, as the attestation predicates write them.

Writers give one spelling per instant: ``YYYY-MM-DDTHH:MM:SSZ``, with ``.ffffff`` only when the
microseconds are not zero. Readers accept this profile of RFC 3339 §5.6: UTC (``Z``) only,
upper-case ``T`` and ``Z``, 0 to 6 fractional digits; offsets, lower case and leap seconds are
refused rather than guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from attest.errors import AttestError

__all__ = ["format_time", "parse_time"]

# RFC 3339 §5.6 date-time, restricted to UTC ("Z") and at most microsecond precision; ASCII
# digits only (``\d`` would take U+0665 and other Unicode digits, which int() then reads).
_UTC_TIME: Final = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})T(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,6}))?Z"
)


def format_time(value: datetime) -> str:
    """Return ``value`` as RFC 3339 UTC; ``value`` must be timezone-aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise AttestError(f"time {value.isoformat()} has no time zone; pass an aware datetime")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def parse_time(value: object, what: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp (``...Z``) into an aware UTC datetime."""
    if not isinstance(value, str):
        raise AttestError(f"{what}: expected an RFC 3339 time string")
    match = _UTC_TIME.fullmatch(value)
    if match is None:
        raise AttestError(f"{what}: expected RFC 3339 UTC time like 2024-01-31T12:00:00Z")
    frac = match["frac"] or "0"
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError as exc:
        raise AttestError(f"{what}: not a valid date and time: {exc}") from exc
    return parsed.replace(microsecond=int(frac.ljust(6, "0")), tzinfo=UTC)
