"""The ``StateStore`` port: lifecycle records of keys (and, later, approvals and audit).

The HSM is the source of truth for key material; the store is the source of truth for lifecycle.
Every write of a record is a compare-and-set on the state the writer read, so two writers can
never both move the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from jwks.records import KeyRecord, KeyState
from jwks.thumbprint import KeyId
from signer.errors import Conflict


class StaleWrite(Conflict):
    """A compare-and-set lost: the record was not in the state the writer expected."""

    code = "stale_write"
    title = "Concurrent change"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyUpdate:
    """Replace a key's record, provided it is still in ``expected`` state."""

    record: KeyRecord
    expected: KeyState


class StateStore(Protocol):
    """Where lifecycle records live."""

    async def keys(self, ring: str | None = None) -> list[KeyRecord]:
        """Every key record (of ``ring``), oldest first."""
        ...

    async def get_key(self, kid: KeyId) -> KeyRecord | None:
        """The record of ``kid``, if any."""
        ...

    async def insert_key(self, record: KeyRecord) -> None:
        """Add a new key; raise ``StaleWrite`` if the kid or HSM key id already exists."""
        ...

    async def update_keys(self, updates: Sequence[KeyUpdate]) -> None:
        """Apply all updates atomically, or none and raise ``StaleWrite``."""
        ...

    async def raise_watermark(self, kid: KeyId, exp: int) -> int:
        """Set the key's ``exp_watermark`` to at least ``exp``; return the stored value."""
        ...

    async def aping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
