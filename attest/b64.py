"""Base64 as DSSE envelopes and Sigstore bundles carry bytes (RFC 4648 §4 and §5).

Writers here always emit the standard alphabet with padding, as DSSE's reference implementation,
cosign and sigstore-python do. Readers accept what the specifications require them to accept and
nothing more:

- DSSE protocol, "Protocol": "Either standard or URL-safe base64 encodings are allowed. Signers
  may use either, and verifiers MUST accept either."
- Protobuf JSON mapping (Sigstore bundles): "Either standard or URL-safe base64 encoding
  with/without paddings are accepted."

So a value may use either alphabet (not both at once), with correct padding or none. Whitespace,
line breaks, stray ``=`` and non-zero pad bits (RFC 4648 §3.5) are refused, so every byte string
has only a few accepted spellings and a signature cannot be re-encoded into many.
"""

from __future__ import annotations

import base64
import re
from typing import Final

from attest.errors import AttestError

__all__ = ["b64_decode", "b64_encode"]

_STANDARD: Final = re.compile(rb"[A-Za-z0-9+/]*")
_URL_SAFE: Final = re.compile(rb"[A-Za-z0-9_-]*")


def b64_encode(data: bytes) -> str:
    """Return ``data`` in standard base64 with padding (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def b64_decode(value: object, what: str) -> bytes:
    """Decode a standard or URL-safe base64 string, padded or not; ``what`` names it in errors.

    Raises :class:`AttestError` for anything that is not a string in one alphabet with a
    canonical ending.
    """
    if not isinstance(value, str):
        raise AttestError(f"{what}: expected a base64 string, not {_kind(value)}")
    if not value.isascii():
        raise AttestError(f"{what}: base64 is ASCII; found other characters")
    raw = value.encode("ascii")
    body = raw.rstrip(b"=")
    padding = len(raw) - len(body)
    if _STANDARD.fullmatch(body) is not None:
        altchars = b"+/"
    elif _URL_SAFE.fullmatch(body) is not None:
        altchars = b"-_"
    else:
        raise AttestError(
            f"{what}: not base64: only one of the standard (+/) or URL-safe (-_) alphabets, "
            "without whitespace"
        )
    if len(body) % 4 == 1:
        # RFC 4648 §4: a final quantum has 2 or 3 characters; 1 leftover character encodes no byte.
        raise AttestError(f"{what}: not base64: a length of {len(body)} characters is impossible")
    missing = -len(body) % 4
    if padding not in (0, missing):
        raise AttestError(
            f"{what}: not base64: {padding} padding characters where {missing} belong"
        )
    decoded = base64.b64decode(body + b"=" * missing, altchars=altchars, validate=True)
    if base64.b64encode(decoded, altchars=altchars).rstrip(b"=") != body:
        # RFC 4648 §3.5: the pad bits of the last character must be zero.
        raise AttestError(f"{what}: not base64: the last character has non-zero padding bits")
    return decoded


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
