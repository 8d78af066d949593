"""JWT requests: parsed once at the edge into a ``JwtRequest``, then turned into claims.

The signer owns ``iat`` and ``exp``: ``exp = now + ttl`` with ``ttl`` at most the ring's
``token_max_ttl``. Claims that try to set either are refused, naming the claim.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jwks.b64 import b64url_encode
from signer.errors import BadRequest, InvalidField, MalformedJson, ReservedClaim, UnknownField

RESERVED_CLAIMS = ("iat", "exp")
MAX_BATCH = 100
DEFAULT_TYP = "JWT"
# RFC 7515 §4.1.9: a media type; we accept the short forms IdPs use ("JWT", "at+jwt", ...).
_TYP = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+/-]{0,63}")  # used with fullmatch: "$" lets "\n" by
_FIELDS = frozenset({"claims", "ttl", "typ"})


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtRequest:
    """A validated request to sign one set of claims."""

    claims: Mapping[str, Any] = field(hash=False)
    ttl: int | None
    typ: str

    @classmethod
    def parse(cls, body: object, *, token_max_ttl: int) -> JwtRequest:
        """Parse a request body, raising a ``BadRequest`` subclass that names the bad field."""
        if not isinstance(body, dict):
            raise MalformedJson("the request body must be a JSON object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise UnknownField(f"unknown field {unknown[0]!r}", field=unknown[0])
        claims = body.get("claims")
        if not isinstance(claims, dict):
            raise InvalidField("'claims' must be a JSON object", field="claims")
        for name in RESERVED_CLAIMS:
            if name in claims:
                raise ReservedClaim(
                    f"claim {name!r} is set by the signer and must not be sent",
                    field=f"claims.{name}",
                )
        _check_registered(claims)
        if "nbf" in claims:
            raise ReservedClaim(
                "claim 'nbf' is not accepted: tokens are valid from 'iat'", field="claims.nbf"
            )
        ttl = body.get("ttl")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
                raise InvalidField("'ttl' must be a positive integer of seconds", field="ttl")
            if ttl > token_max_ttl:
                raise InvalidField(
                    f"'ttl' {ttl} exceeds the ring's token_max_ttl of {token_max_ttl} seconds",
                    field="ttl",
                )
        typ = body.get("typ", DEFAULT_TYP)
        if not isinstance(typ, str) or not _TYP.fullmatch(typ):
            raise InvalidField("'typ' must be a short media type such as 'JWT'", field="typ")
        return cls(claims=claims, ttl=ttl, typ=typ)

    def claims_at(self, now: int, *, token_max_ttl: int) -> dict[str, Any]:
        """The claims to sign at ``now``: caller's claims plus ``iat``, ``exp`` and a ``jti``."""
        ttl = self.ttl if self.ttl is not None else token_max_ttl
        claims = dict(self.claims)
        claims["iat"] = now
        claims["exp"] = now + ttl
        claims.setdefault("jti", _jtis.next())
        return claims


def _check_registered(claims: Mapping[str, Any]) -> None:
    """RFC 7519 §4.1: ``iss`` and ``sub`` are strings (StringOrURI), ``aud`` a string or an
    array of them, and ``jti`` a non-empty string. Verifiers refuse a token that breaks these,
    and the audit record hashes ``sub`` only when it is a string."""
    for name in ("iss", "sub"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidField(f"claim {name!r} must be a string", field=f"claims.{name}")
    if "aud" in claims:
        aud = claims["aud"]
        many = isinstance(aud, list) and aud and all(isinstance(item, str) for item in aud)
        if not isinstance(aud, str) and not many:
            raise InvalidField(
                "claim 'aud' must be a string or a non-empty array of strings", field="claims.aud"
            )
    if "jti" in claims and (not isinstance(claims["jti"], str) or not claims["jti"]):
        raise InvalidField("claim 'jti' must be a non-empty string", field="claims.jti")


class _JtiPool:
    """Random ``jti`` values (16 bytes, base64url) cut from a buffer of ``os.urandom`` output.

    One system call per 256 tokens instead of one per token: ``os.urandom`` releases the GIL,
    and under load every release means waiting to take it back. The bytes are the same CSPRNG
    output either way; the buffer is dropped in a forked child so two workers never share it.
    """

    SIZE = 16
    REFILL = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._buffer, self._offset = b"", 0

    def next(self) -> str:
        if self._offset + self.SIZE > len(self._buffer):
            self._buffer, self._offset = os.urandom(self.REFILL), 0
        start, self._offset = self._offset, self._offset + self.SIZE
        return b64url_encode(self._buffer[start : self._offset])


_jtis = _JtiPool()


def parse_batch(body: object, *, token_max_ttl: int) -> list[JwtRequest]:
    """Parse ``{"requests": [request, ...]}`` (1 to ``MAX_BATCH``); errors name the index."""
    if not isinstance(body, dict):
        raise MalformedJson("the request body must be a JSON object")
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        raise UnknownField(f"unknown field {unknown[0]!r}", field=unknown[0])
    items = body.get("requests")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidField(
            f"'requests' must be a list of 1 to {MAX_BATCH} requests", field="requests"
        )
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(JwtRequest.parse(item, token_max_ttl=token_max_ttl))
        except BadRequest as exc:
            where = f"requests[{index}]" + (f".{exc.field}" if exc.field else "")
            raise type(exc)(f"{where}: {exc.detail}", field=where) from None
    return parsed
