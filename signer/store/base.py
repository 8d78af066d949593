"""The ``StateStore`` port: key lifecycle records, approvals, the audit chain, meta and leases.

The HSM is the source of truth for key material; the store is the source of truth for lifecycle.
Every write of a record is a compare-and-set on the state the writer read, so two writers can
never both move the same key.

Rotation leadership (DESIGN.md "State"): with several processes on one store, one leader holds a
lease and runs the lifecycle. A lease grant carries a **fencing epoch** that goes up every time the
lease changes hands. The leader passes a :class:`Fence` with each lifecycle write and the store
checks it in the same transaction as the write, so a leader that was paused past its lease (GC,
VM migration, a stalled disk) and wakes up believing it still leads cannot overwrite what its
successor wrote: its write fails with :class:`FencedOut`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from jwks.records import KeyRecord, KeyState
from jwks.thumbprint import KeyId
from signer.approvals.rules import ApprovalRequest
from signer.audit.chain import GENESIS, AuditEntry, AuditRecord
from signer.codesign.records import SigningRequest
from signer.errors import Conflict, KeyNotActive


class StaleWrite(Conflict):
    """A compare-and-set lost: the record was not in the state the writer expected."""

    code = "stale_write"
    title = "Concurrent change"


class KeysNotActive(KeyNotActive):
    """An audit commit that required keys to be active found some that are not (revoked or
    rotated out meanwhile, perhaps by another process): nothing was committed."""

    code = "keys_not_active"
    title = "Signing key no longer active"

    def __init__(self, kids: frozenset[KeyId]) -> None:
        super().__init__(f"key {', '.join(sorted(kids))} is no longer active")
        self.kids = kids


class FencedOut(Conflict):
    """A fenced write was refused: the writer no longer holds the lease at that epoch."""

    code = "fenced_out"
    title = "Lifecycle leadership lost"


# What ``watch_changes`` yields when changes may have been missed (after a reconnect): every ring
# should be re-read. Ring names start with a letter or digit, so this cannot be one.
ANY_RING: Final = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fence:
    """The lease a lifecycle write is made under: ``name`` held by ``owner`` at ``epoch``."""

    name: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyUpdate:
    """Replace a key's record, provided it is still in ``expected`` state."""

    record: KeyRecord
    expected: KeyState


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditAnchor:
    """Where the stored audit log starts: records up to ``seq`` were archived and pruned
    (``signer audit prune``), and the first stored record links to ``hash``, that of ``seq``."""

    seq: int
    hash: str


# A log nothing was pruned from starts at record 1, which links to the genesis value.
NO_ANCHOR: Final = AuditAnchor(seq=0, hash=GENESIS)


class StateStore(Protocol):
    """Where lifecycle records live."""

    # True when processes on other hosts may share this store (Redis): lifecycle leadership is
    # then needed whatever the local worker count. A SQLite file is shared only by one node's
    # workers, which the caller knows from its own settings.
    replicated: bool

    async def keys(self, ring: str | None = None) -> list[KeyRecord]:
        """Every key record (of ``ring``), oldest first."""
        ...

    async def get_key(self, kid: KeyId) -> KeyRecord | None:
        """The record of ``kid``, if any."""
        ...

    async def insert_key(
        self,
        record: KeyRecord,
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        """Add a new key and its audit records atomically; ``StaleWrite`` if the kid exists.

        With ``fence``, ``FencedOut`` unless that lease is held at that epoch, checked in the
        same transaction.
        """
        ...

    async def update_keys(
        self,
        updates: Sequence[KeyUpdate],
        *,
        audit: Sequence[AuditEntry] = (),
        fence: Fence | None = None,
    ) -> None:
        """Apply all updates and their audit records atomically, or none: ``StaleWrite``.

        A record's ``exp_watermark`` never goes down: an update carrying an older one than the
        store holds (a signature raced the transition) keeps the stored one. ``fence`` as for
        :meth:`insert_key`.
        """
        ...

    async def raise_watermark(self, kid: KeyId, exp: int) -> int:
        """Set the key's ``exp_watermark`` to at least ``exp``; return the stored value."""
        ...

    async def append_audit(
        self, entries: Sequence[AuditEntry], *, require_active: Collection[KeyId] = ()
    ) -> list[AuditRecord]:
        """Chain and durably commit ``entries`` in one transaction; return the records.

        ``require_active``: keys that must still be active when the transaction commits (the
        keys that signed the tokens these records audit); ``KeysNotActive``, naming those that
        are not, and nothing committed otherwise. A token leaves only once its record is
        committed, so none leaves signed by a key revoked before that, by any process.
        """
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

    async def audit_anchor(self) -> AuditAnchor:
        """Where the stored log starts (``NO_ANCHOR`` if nothing was ever pruned)."""
        ...

    async def audit_export(self, *, after: int = 0) -> tuple[AuditAnchor, list[str]]:
        """The anchor and the stored JSON of each record with ``seq > after``, as of one
        instant: what verifying or pruning the stored log reads."""
        ...

    async def prune_audit(
        self, *, through: int, expected_hash: str, audit: Sequence[AuditEntry] = ()
    ) -> list[AuditRecord]:
        """Make record ``through`` the anchor and append ``audit``, in one transaction, then
        remove the records up to it (in steps; reads skip them from the first); the appended
        records.

        ``StaleWrite``, with nothing changed, unless record ``through`` is stored with
        ``expected_hash`` and a record after it is stored too: the log never becomes empty, so
        its head (what the next record links to) is always a stored record.
        """
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

    async def try_lease(self, name: str, owner: str, *, ttl: float, now: float) -> int | None:
        """Take or extend lease ``name`` for ``owner`` for ``ttl`` seconds from ``now``.

        Returns the fencing epoch, or None while another owner holds the lease unexpired. The
        epoch goes up whenever the lease passes to another owner and never on a renewal (nor on
        a retake by the same owner with nobody in between).
        """
        ...

    def watch_changes(self) -> AsyncIterator[str]:
        """Yield the ring of every key-record write as it commits, from any process.

        ``ANY_RING`` means changes may have been missed (a reconnect): re-read everything. A
        store with no change feed never yields; readers keep a periodic re-read either way.
        The iterator ends when the store is closed.
        """
        ...

    async def aping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...

    async def insert_signing_request(
        self,
        record: SigningRequest,
        *,
        approval: ApprovalRequest | None = None,
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Add a signing request, the ``approval`` it is linked to (if given) and their audit
        records atomically; ``StaleWrite`` (and nothing written) if either id exists."""
        ...

    async def update_signing_request(
        self,
        record: SigningRequest,
        *,
        expected_version: int,
        audit: Sequence[AuditEntry] = (),
        require_active: Collection[KeyId] = (),
    ) -> None:
        """Replace a signing request still at ``expected_version`` (else ``StaleWrite``), with
        its audit records in the same transaction; ``KeysNotActive`` (nothing written) if a key
        of ``require_active`` is not active (the key that signed its outputs)."""
        ...

    async def get_signing_request(self, request_id: str) -> SigningRequest | None:
        """One signing request, if it exists."""
        ...

    async def signing_requests(self, *, state: str | None = None) -> list[SigningRequest]:
        """Signing requests (in ``state``), oldest first."""
        ...
