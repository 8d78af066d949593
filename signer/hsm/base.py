"""The ``KeyBackend`` port: everything the signer asks of an HSM.

Keys are addressed by a ``KeyRef`` (``CKA_ID`` + ``CKA_LABEL``) chosen by the caller before
generation; the JOSE ``kid`` (an RFC 7638 thumbprint) is only known afterwards and lives in the
state store next to the ref.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from jwks.algorithms import Alg


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRef:
    """Where a key pair lives on the token."""

    key_id: str  # hex string; its bytes are CKA_ID of both halves
    label: str  # CKA_LABEL, "signer/<ring>/<key_id>"
    alg: Alg


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyProof:
    """The attribute evidence that a private key was born on the token and can never leave it."""

    local: bool
    always_sensitive: bool
    never_extractable: bool
    sensitive: bool
    extractable: bool
    value_readable: bool  # True if reading CKA_VALUE was *not* refused

    @property
    def ok(self) -> bool:
        """True when every attribute says non-exportable and the value read was refused."""
        return (
            self.local
            and self.always_sensitive
            and self.never_extractable
            and self.sensitive
            and not self.extractable
            and not self.value_readable
        )

    def failures(self) -> list[str]:
        """Name each attribute that breaks the proof, for error messages."""
        checks = {
            "CKA_LOCAL is false": not self.local,
            "CKA_ALWAYS_SENSITIVE is false": not self.always_sensitive,
            "CKA_NEVER_EXTRACTABLE is false": not self.never_extractable,
            "CKA_SENSITIVE is false": not self.sensitive,
            "CKA_EXTRACTABLE is true": self.extractable,
            "CKA_VALUE was readable": self.value_readable,
        }
        return [name for name, failed in checks.items() if failed]


class KeyBackend(Protocol):
    """An HSM that generates non-exportable key pairs and signs with them."""

    async def generate(self, alg: Alg, key_id: str, label: str) -> KeyRef:
        """Generate a key pair for ``alg`` on the token; the private half never leaves it."""
        ...

    async def public_key(self, ref: KeyRef) -> bytes:
        """Return the public key as DER SubjectPublicKeyInfo."""
        ...

    async def sign(self, ref: KeyRef, data: bytes) -> bytes:
        """Sign ``data`` (the whole message) and return the JOSE-form signature."""
        ...

    async def sign_many(self, ref: KeyRef, inputs: Sequence[bytes]) -> list[bytes]:
        """``sign`` each input with one key, in order; raise the first failure."""
        ...

    async def sign_digest(self, ref: KeyRef, digest: bytes) -> bytes:
        """Sign a precomputed digest of the alg's hash (ECDSA keys only); raw ``r || s``."""
        ...

    async def destroy(self, ref: KeyRef) -> None:
        """Destroy both halves of the key pair; destroying an absent key is not an error."""
        ...

    async def attributes(self, ref: KeyRef) -> KeyProof:
        """Read the private key's custody attributes and try (and expect to fail) to read it."""
        ...

    async def list_refs(self, label_prefix: str) -> list[KeyRef]:
        """Every private key on the token whose label starts with ``label_prefix``."""
        ...

    async def aping(self) -> None:
        """Raise ``HsmUnavailable`` unless the token answers."""
        ...

    async def aclose(self) -> None:
        """Close sessions and the worker thread."""
        ...
