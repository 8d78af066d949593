"""Lifecycle leadership: the lease one process holds to run the lifecycle, and its fence.

With several processes on one store (workers of one node, or replicas on Redis), one leader at a
time runs the lifecycle (DESIGN.md "State": rotation leadership by a lease with a fencing epoch).
The lease is renewed well within its TTL; each grant carries an epoch that rises whenever the
lease changes hands, and the leader passes ``fence()`` with every lifecycle write so the store
refuses the writes of a leader that lost the lease while paused (``FencedOut``). On such a
refusal the process stops leading at once and follows until it wins the lease again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Final

from signer.store.base import Fence, FencedOut, StateStore

log = logging.getLogger("signer.keeper")

LEASE: Final = "lifecycle-leader"
LEASE_TTL: Final = 10.0


class Leadership:
    """Whether this process leads the lifecycle, and at which fencing epoch."""

    def __init__(self, store: StateStore, *, shared: bool, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        # A store other hosts share (Redis) always needs a leader, whatever the worker count.
        self.shared = shared or store.replicated
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._leader = not self.shared
        self._epoch: int | None = None

    @property
    def leader(self) -> bool:
        """Whether this process runs the lifecycle (always, unless the store is shared)."""
        return self._leader

    @property
    def epoch(self) -> int | None:
        """The fencing epoch of the lease this process holds, if it does."""
        return self._epoch

    async def renew(self) -> bool:
        """Take or renew the lease (when shared); whether this process leads now."""
        if not self.shared:
            return True
        was = self._leader
        self._epoch = await self._store.try_lease(
            LEASE, self.owner, ttl=LEASE_TTL, now=self._clock()
        )
        self._leader = self._epoch is not None
        if self._leader and not was:
            log.info("lifecycle leadership taken at epoch %d", self._epoch)
        elif was and not self._leader:
            log.info("lifecycle leadership lost to another process")
        return self._leader

    def fence(self) -> Fence | None:
        """What this process's lifecycle writes are made under (None: not as a leader)."""
        if not self.shared or self._epoch is None:
            return None
        return Fence(name=LEASE, owner=self.owner, epoch=self._epoch)

    def fenced_out(self, exc: FencedOut) -> None:
        """A write was refused because another process leads now: follow from here on."""
        log.warning(
            "lifecycle leadership lost: a write at epoch %s was refused (%s)",
            self._epoch,
            exc.detail,
        )
        self._leader = False
        self._epoch = None
