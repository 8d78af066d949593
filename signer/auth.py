"""Authentication of bearer tokens and scoped permission checks.

Tokens are configured only as SHA-256 digests. A presented token is hashed and compared with
every principal's digest in constant time (``hmac.compare_digest``, no early exit), so neither
the match nor its position leaks through timing. Tokens never reach a log or an error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from signer.errors import Forbidden, Unauthenticated
from signer.settings import PrincipalSettings

_BEARER = "bearer "
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """An authenticated caller."""

    name: str
    permissions: frozenset[str]

    def allows(self, permission: str) -> bool:
        """True if a granted permission equals ``permission`` or covers it with ``:*``."""
        if permission in self.permissions:
            return True
        return any(
            granted.endswith(":*") and permission.startswith(granted[:-1])
            for granted in self.permissions
        )


class Authenticator:
    """Maps a bearer token, or a verified client certificate's subject, to a ``Principal``."""

    def __init__(self, principals: Sequence[PrincipalSettings]) -> None:
        self._principals = [
            (p.token_sha256, Principal(name=p.name, permissions=frozenset(p.permissions)))
            for p in principals
        ]
        # Settings hold each subject in the form a certificate's is rendered in: equal or not.
        self._by_subject = {
            p.cert_subject: principal
            for p, (_, principal) in zip(principals, self._principals, strict=True)
            if p.cert_subject
        }

    def authenticate(
        self, authorization: str | None, *, cert_subject: str | None = None
    ) -> Principal:
        """The caller's principal; ``Unauthenticated`` unless a credential matches one.

        A bearer token, when sent, decides; otherwise a client certificate that the TLS layer
        verified against ``client_ca`` is matched by its subject (``signer.subjects``), exactly.
        """
        if not authorization and cert_subject is not None:
            principal = self._by_subject.get(cert_subject)
            if principal is None:
                raise Unauthenticated("the client certificate's subject matches no principal")
            return principal
        return self._bearer(authorization)

    def _bearer(self, authorization: str | None) -> Principal:
        if not authorization or not authorization[: len(_BEARER)].lower() == _BEARER:
            raise Unauthenticated("a bearer token or a client certificate is required")
        token = authorization[len(_BEARER) :].strip()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("the bearer token is not valid")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for expected, principal in self._principals:
            if hmac.compare_digest(digest, expected):
                found = principal
        if found is None:
            raise Unauthenticated("the bearer token is not valid")
        return found


def require(principal: Principal, permission: str) -> None:
    """Raise ``Forbidden`` unless ``principal`` holds ``permission``."""
    if not principal.allows(permission):
        raise Forbidden(f"principal {principal.name!r} lacks permission {permission!r}")
