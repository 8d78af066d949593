"""The JWKS document (RFC 7517 §5) as precomputed bytes with a strong ETag.

Relying parties fetch the JWKS often and replicas serve it behind one load balancer, so the body is
built once per key-set change, and it is canonical: the same keys in the same order give the same
bytes, and so the same ``ETag``, on every replica. A client that revalidates against another
replica still gets ``304 Not Modified``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from jwks.b64 import b64url_encode
from jwks.jwk import Jwk

__all__ = ["JwksDocument", "build_jwks", "etag_matches"]

# Every member a published JWK may carry, in the order it is written. Fixing the order here makes
# the bytes independent of how each replica happened to build its dicts; refusing anything else
# keeps private members ("d", "p", ...) out of a public document even if a caller slips.
_MEMBER_ORDER: Final = ("kty", "crv", "x", "y", "n", "e", "kid", "alg", "use")


@dataclass(frozen=True, slots=True, kw_only=True)
class JwksDocument:
    """A serialised JWKS, ready to send: the body and its strong ETag."""

    body: bytes
    etag: str  # RFC 9110 §8.8.3 entity-tag, quoted, strong (no W/)


def build_jwks(keys: Sequence[Jwk]) -> JwksDocument:
    """Return the canonical ``{"keys":[...]}`` document for ``keys``, in the order given.

    The caller decides the key order and must make it deterministic (for example, ordered by
    activation time, then kid), because a different order is a different body and ETag. Within
    each key, members are written in one fixed order. Raises ``ValueError`` for a member a public
    JWK must not carry or for two keys with the same ``kid``.
    """
    canonical: list[dict[str, object]] = []
    seen_kids: set[object] = set()
    for index, jwk in enumerate(keys):
        extra = sorted(set(jwk) - set(_MEMBER_ORDER))
        if extra:
            raise ValueError(f"JWKS key {index} has members a published JWK must not have: {extra}")
        kid = jwk.get("kid")
        if kid is not None:
            # RFC 7517 §4.5: keys in a set SHOULD have distinct kids; a relying party picks by kid.
            if kid in seen_kids:
                raise ValueError(f"JWKS key {index} repeats kid {kid!r}")
            seen_kids.add(kid)
        mapping: dict[str, object] = dict(jwk)
        canonical.append({name: mapping[name] for name in _MEMBER_ORDER if name in mapping})
    body = json.dumps(
        {"keys": canonical}, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")
    return JwksDocument(body=body, etag=_strong_etag(body))


def _strong_etag(body: bytes) -> str:
    # RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; base64url is all etagc.
    # The full 43-character base64url of the SHA-256 digest: a collision would mean stale keys.
    return '"' + b64url_encode(hashlib.sha256(body).digest()) + '"'


def etag_matches(if_none_match_header: str | None, etag: str) -> bool:
    """Return True if ``If-None-Match`` matches ``etag``, so the response is ``304``.

    RFC 9110 §13.1.2: ``*`` matches any current representation; otherwise the header is a
    comma-separated list of entity-tags compared with the weak comparison (§8.8.3.2), so a
    ``W/`` prefix on either side is ignored. A header that does not parse matches nothing, so the
    client gets the full document rather than a wrong ``304``.
    """
    if if_none_match_header is None:
        return False
    if if_none_match_header in (etag, "W/" + etag):
        return True  # the usual case: a client sends back the one tag it was given
    if if_none_match_header.strip(" \t") == "*":
        return True
    ours = _opaque_tag(etag)
    if ours is None:
        raise ValueError(f"not an entity-tag: {etag!r}")
    tags = _parse_entity_tags(if_none_match_header)
    return tags is not None and ours in tags


def _opaque_tag(value: str) -> str | None:
    tags = _parse_entity_tags(value)
    if tags is None or len(tags) != 1:
        return None
    return tags[0]


def _parse_entity_tags(header: str) -> list[str] | None:
    """Return the opaque-tags (quotes included, ``W/`` dropped) of a ``#entity-tag`` list.

    Parsed by hand rather than split on commas, because an etagc may itself be a comma. Returns
    None for anything that is not a valid list.
    """
    tags: list[str] = []
    pos, end = 0, len(header)
    while True:
        # RFC 9110 §5.6.1: list elements are separated by OWS "," OWS; empty elements are allowed.
        while pos < end and header[pos] in " \t,":
            pos += 1
        if pos == end:
            return tags
        if header.startswith("W/", pos):
            pos += 2
        if pos == end or header[pos] != '"':
            return None
        close = header.find('"', pos + 1)
        if close == -1:
            return None
        opaque = header[pos : close + 1]
        if not all(_is_etagc(char) for char in opaque[1:-1]):
            return None
        tags.append(opaque)
        pos = close + 1
        while pos < end and header[pos] in " \t":
            pos += 1
        if pos < end and header[pos] != ",":
            return None


def _is_etagc(char: str) -> bool:
    # RFC 9110 §8.8.3: etagc = %x21 / %x23-7E / obs-text (%x80-FF); no DQUOTE, space or control.
    code = ord(char)
    return code == 0x21 or 0x23 <= code <= 0x7E or 0x80 <= code <= 0xFF
