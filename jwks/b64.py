"""Base64url without padding, as JOSE uses it (RFC 7515 §2, RFC 4648 §5).

Encoding is on the signing hot path, so it is a thin wrapper around :mod:`base64`. Decoding is on
the parsing edge (JWKs from outside, test vectors), so it is strict: only the URL-safe alphabet,
no padding, no whitespace, and no stray bits in the last character, so every value has exactly
one accepted spelling.
"""

from __future__ import annotations

import base64
import re

__all__ = ["b64url_decode", "b64url_encode", "b64url_encode_ascii"]

# RFC 7515 §2: "Base64url Encoding ... with all trailing '=' characters omitted ... and without
# the inclusion of any line breaks, whitespace, or other additional characters".
_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")


def b64url_encode_ascii(data: bytes) -> bytes:
    """Return the unpadded base64url encoding of ``data`` as ASCII bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_encode(data: bytes) -> str:
    """Return the unpadded base64url encoding of ``data`` as a string."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str | bytes) -> bytes:
    """Decode an unpadded base64url value, rejecting anything but its one canonical spelling."""
    raw = value.encode("ascii", errors="replace") if isinstance(value, str) else value
    if _ALPHABET.fullmatch(raw) is None:
        raise ValueError("not base64url: only A-Z a-z 0-9 - _ are allowed, without padding")
    if len(raw) % 4 == 1:
        # RFC 4648 §5: a final quantum is 2 or 3 characters; 1 leftover character encodes no byte.
        raise ValueError(f"not base64url: a length of {len(raw)} characters is impossible")
    decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if b64url_encode_ascii(decoded) != raw:
        # RFC 4648 §3.5: the pad bits of the last character must be zero.
        raise ValueError("not base64url: the last character has non-zero padding bits")
    return decoded
