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
from signer.approvals.rules import ApprovalRequest
from signer.audit.chain import AuditEntry, AuditRecord
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

    async def insert_key(self, record: KeyRecord, *, audit: Sequence[AuditEntry] = ()) -> None:
        """Add a new key and its audit records atomically; ``StaleWrite`` if the kid exists."""
        ...

    async def update_keys(
        self, updates: Sequence[KeyUpdate], *, audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Apply all updates and their audit records atomically, or none: ``StaleWrite``."""
        ...

    async def raise_watermark(self, kid: KeyId, exp: int) -> int:
        """Set the key's ``exp_watermark`` to at least ``exp``; return the stored value."""
        ...

    async def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Chain and durably commit ``entries`` in one transaction; return the records."""
        ...

    async def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Audit records with ``seq > after``, in order, at most ``limit``."""
        ...

    async def audit_last(self, *, action: str | None = None) -> AuditRecord | None:
        """The newest audit record (of ``action``), if any."""
        ...

    async def audit_raw(self, *, after: int = 0) -> list[str]:
        """The stored JSON text of each audit record with ``seq > after`` (for verification)."""
        ...

    async def insert_approval(
        self, request: ApprovalRequest, *, audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Add an approval request and its audit records atomically."""
        ...

    async def update_approval(
        self,
        request: ApprovalRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Replace a request still at ``expected_version`` (else ``StaleWrite``), with audit."""
        ...

    async def get_approval(self, approval_id: str) -> ApprovalRequest | None:
        """One approval request, if it exists."""
        ...

    async def approvals(self, *, state: str | None = None) -> list[ApprovalRequest]:
        """Approval requests (in ``state``), oldest first."""
        ...

    async def get_meta(self, key: str) -> str | None:
        """A small named value."""
        ...

    async def set_meta(self, key: str, value: str, *, audit: Sequence[AuditEntry] = ()) -> None:
        """Set a small named value and its audit records atomically."""
        ...

    async def try_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        """Take or extend a lease for ``owner`` until ``now + ttl``; False if another holds it."""
        ...

    async def aping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
