"""JWK thumbprints (RFC 7638), the signer's key ids.

The kid of every key is its RFC 7638 SHA-256 thumbprint, so every replica derives the same kid
from the same public key without coordination, and a relying party can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final, NewType

from jwks.b64 import b64url_encode
from jwks.jwk import Jwk

__all__ = ["KeyId", "thumbprint", "thumbprint_input"]

KeyId = NewType("KeyId", str)

# RFC 7638 §3.2 (EC, RSA) and RFC 8037 §2 (OKP): the required members, already in lexical order.
_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
_KEY_MATERIAL: Final = frozenset({"x", "y", "n", "e"})
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")


def thumbprint_input(jwk: Jwk) -> bytes:
    """Return the RFC 7638 §3 hash input: the required members as compact, sorted UTF-8 JSON."""
    kty = jwk.get("kty")
    required = _REQUIRED.get(kty) if isinstance(kty, str) else None
    if required is None:
        raise ValueError(f"no thumbprint for kty {kty!r}; expected 'EC', 'RSA' or 'OKP'")
    members: dict[str, str] = {}
    for name in required:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{kty} JWK lacks the required member {name!r}")
        if name in _KEY_MATERIAL and _B64URL.fullmatch(value) is None:
            # RFC 7638 §3.3 hashes the members as given; a padded or otherwise mis-encoded value
            # would give a kid no other implementation agrees with, so refuse it.
            raise ValueError(f"{kty} JWK member {name!r} is not unpadded base64url")
        members[name] = value
    # RFC 7638 §3.2: lexical order of member names, no whitespace; §3.1 step 2: UTF-8.
    text = json.dumps(members, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.encode("utf-8")


def thumbprint(jwk: Jwk) -> KeyId:
    """Return the RFC 7638 SHA-256 thumbprint of ``jwk``, base64url without padding.

    Only the required members count (RFC 7638 §3.2), so ``kid``, ``alg``, ``use`` and member
    order make no difference. Raises ``ValueError`` for an unknown ``kty`` or a missing member.
    """
    return KeyId(b64url_encode(hashlib.sha256(thumbprint_input(jwk)).digest()))
