"""Key generation that a retry does not repeat: at most one new HSM key per ring, purpose and
lease epoch until its record lands in the store.

A generation makes the key on the token, then inserts its record. If the insert fails (the
store was unreachable, or it committed but the answer was lost), the key is remembered here;
the next attempt under the same epoch inserts that key again (finding out whether the first
insert had committed) instead of making a second one. A generation the ring no longer needs, or
one a fenced-out leader made, is destroyed on the token at once: no record can name it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

from jwks.lifecycle import Generate
from jwks.records import KeyRecord
from signer.hsm.base import KeyBackend
from signer.rings import ref_of
from signer.service import SignerService
from signer.settings import RingPolicy

log = logging.getLogger("signer.keeper")


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingKey:
    """A key made on the token whose record is not known to have landed in the store."""

    epoch: int | None  # the lease epoch it was made under (None: not shared)
    record: KeyRecord


class KeyMaker:
    """Makes keys through the service and remembers the ones whose insert is unconfirmed."""

    def __init__(self, service: SignerService, backend: KeyBackend) -> None:
        self._service = service
        self._backend = backend
        self._pending: dict[tuple[str, Generate], PendingKey] = {}

    async def make(self, policy: RingPolicy, why: Generate, *, epoch: int | None) -> KeyRecord:
        """A new key on the token, or the one an earlier attempt under ``epoch`` made."""
        pending = self._pending.get((policy.name, why))
        if pending is None or pending.epoch != epoch:
            record = await self._service.generate_key(policy, active=why is Generate.EMERGENCY)
            self._pending[(policy.name, why)] = PendingKey(epoch=epoch, record=record)
            return record
        # Published (and, for an emergency key, active) from the insert that shows it, not from
        # the failed attempt: pre-publication counts from when relying parties can see the key.
        now = int(self._service.clock())
        activated = now if pending.record.activated_at is not None else None
        return replace(pending.record, published_at=now, activated_at=activated)

    def landed(self, ring: str, why: Generate) -> None:
        """The key's record is in the store: nothing to remember."""
        self._pending.pop((ring, why), None)

    async def abandon(self, ring: str, why: Generate) -> None:
        """The key's insert was refused for good: destroy it on the token."""
        pending = self._pending.pop((ring, why), None)
        if pending is not None:
            await self._backend.destroy(ref_of(pending.record))

    async def settle(self, ring: str, stored: Iterable[KeyRecord]) -> None:
        """The ring needs no new key now: forget its generations, destroying those that never
        landed (``stored`` is the ring's records)."""
        held = {r.key_id for r in stored}
        for key, pending in list(self._pending.items()):
            if key[0] != ring:
                continue
            del self._pending[key]
            if pending.record.key_id not in held:
                log.info(
                    "destroying a generated key the ring no longer needs", extra={"ring": ring}
                )
                await self._backend.destroy(ref_of(pending.record))

    def in_flight(self, ring: str, epoch: int | None) -> set[str]:
        """Token key ids of ``ring``'s generations under ``epoch`` whose insert may yet land;
        those of older epochs are forgotten (they were inserted, or never can be)."""
        kept: set[str] = set()
        for key, pending in list(self._pending.items()):
            if key[0] == ring and pending.epoch == epoch:
                kept.add(pending.record.key_id)
            elif key[0] == ring:
                del self._pending[key]
        return kept
