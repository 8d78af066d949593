"""The lifecycle shell: applies what ``jwks.lifecycle`` decides, to the store and the HSM.

Order of effects, so a crash at any point converges on restart:

- generate: the key is made on the token first, then its record is inserted. A crash between
  leaves an orphan on the token with no record; ``sweep`` destroys it at the next start (it was
  never published, so nothing can depend on it).
- transitions: persisted atomically (compare-and-set on the states read) before anything acts
  on them; the in-memory view is rebuilt right after each write.
- destroy: the record moves to ``destroyed`` first, then the private key is destroyed; ``sweep``
  finishes a destroy that a crash interrupted, and the loop retries one the token refused
  (``finish_destroys``) until the key is gone.

The scheduler sleeps until the next due time computed from the records (no polling lag), and
wakes early when an operator rotates or revokes.

Several processes on one store (workers of one node, or replicas on Redis): one leader runs the
lifecycle, its writes fenced by its lease's epoch (``signer.leadership``). Only the leader makes
keys and sweeps the token (``sweep`` says why that is safe). Followers rebuild their views when
the store's change feed names a ring, and re-read it every ``FOLLOW_SECONDS`` anyway. Operator
requests may land on any process: they are compare-and-set writes, valid from a follower too;
a revocation's replacement key is left to the leader, which the change feed wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from jwks import lifecycle
from jwks.lifecycle import Change, Generate
from jwks.records import HELD_STATES, KeyRecord, KeyState
from jwks.thumbprint import KeyId
from signer.audit.chain import AuditEntry
from signer.audit.writer import AuditWriter
from signer.errors import Conflict, InvalidField, SignerError, UnknownKey
from signer.hsm.base import KeyRef
from signer.key_events import change_record, policy_document
from signer.keygen import KeyMaker
from signer.leadership import LEASE_TTL, Leadership
from signer.rings import ref_of
from signer.service import SignerService
from signer.settings import RingPolicy
from signer.store.base import FencedOut, KeyUpdate, StaleWrite

log = logging.getLogger("signer.keeper")

SYSTEM = "system"

MAX_ROUNDS = 8  # a tick settles in at most: promote, retire, destroy, generate
RECONCILE_SECONDS = 60.0
FOLLOW_SECONDS = 0.5  # how quickly a follower sees the leader's (or an operator's) changes
FOLLOW_START_SECONDS = 60.0  # look at the store at least this often, whatever is due
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
DESTROY_RETRY_SECONDS = 10.0  # a key recorded destroyed is still on the token: try again soon


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationAccepted:
    """The answer to a rotate request."""

    ring: str
    requested_at: int
    activates_at: int  # when the pre-published key takes over (now, for an immediate one)


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationDone:
    """The answer to a revoke request."""

    revoked: KeyRecord
    active: KeyId | None  # the ring's signing key after the kill-switch


class Keeper:
    """Runs each ring's lifecycle: scheduled ticks, rotate and revoke requests, start-up sweep."""

    def __init__(self, service: SignerService, audit: AuditWriter, *, shared: bool = False) -> None:
        self._service = service
        self._audit = audit
        self._store = service.store
        # DESIGN.md: with several processes on one store, a leader (by lease) runs the lifecycle.
        self._lease = Leadership(self._store, shared=shared, clock=service.clock)
        self._shared = self._lease.shared
        self._swept_epoch: int | None = None
        self._backend = service.backend
        self._maker = KeyMaker(service, self._backend)
        self._locks = {policy.name: asyncio.Lock() for policy in service.settings.rings}
        self._wake = asyncio.Event()
        self._next_at: dict[str, int | None] = {}
        # Keys recorded ``destroyed`` whose destruction on the token failed, by key id.
        self._undestroyed: dict[str, KeyRef] = {}

    def next_transition(self, ring: str) -> int | None:
        """When ``ring``'s next scheduled transition is due, as of the last tick."""
        return self._next_at.get(ring)

    def _now(self) -> int:
        return int(self._service.clock())

    @property
    def leader(self) -> bool:
        """Whether this process runs the lifecycle (always, unless the store is shared)."""
        return self._lease.leader

    @property
    def epoch(self) -> int | None:
        """The fencing epoch of the lifecycle lease this process holds, if it does."""
        return self._lease.epoch

    async def start(self) -> None:
        """Sweep the token, prove every key in use, and settle every ring (the leader), or
        wait for the leader to have done so and follow (another worker)."""
        if not await self._lease.renew():
            await self._follow_start()
            return
        await self._service.audit_key(create=True)
        await self.sweep()
        for policy in self._service.settings.rings:
            await self._record_policy(policy)
            for record in await self._store.keys(policy.name):
                if record.state in (KeyState.PENDING, KeyState.ACTIVE, KeyState.DRAINING):
                    await self._service.prove_record(record)
            await self.tick(policy)

    async def _follow_start(self) -> None:
        deadline = self._service.clock() + FOLLOW_START_SECONDS
        while True:
            await self.reload()
            views = self._service.views
            if all(views[p.name].signing is not None for p in self._service.settings.rings):
                break
            if self._service.clock() > deadline:
                raise Conflict("no lifecycle leader brought the rings up; is another worker up?")
            await asyncio.sleep(0.2)
        for policy in self._service.settings.rings:
            for record in await self._store.keys(policy.name):
                if record.state in (KeyState.PENDING, KeyState.ACTIVE, KeyState.DRAINING):
                    await self._service.prove_record(record)

    async def reload(self) -> None:
        """Follow the store: rebuild every ring's view from its records (no writes)."""
        now = int(self._service.clock())
        for policy in self._service.settings.rings:
            records = await self._store.keys(policy.name)
            self._service.refresh(policy.name, records)
            self._next_at[policy.name] = lifecycle.step(policy, records, now).next_at

    async def _record_policy(self, policy: RingPolicy) -> None:
        """Audit a ring's policy when it is new or differs from the one last run with."""
        current = json.dumps(policy_document(policy), sort_keys=True)
        key = f"policy:{policy.name}"
        previous = await self._store.get_meta(key)
        if previous == current:
            return
        changed = self._audit.make(
            actor=SYSTEM,
            action="ring.policy",
            target=f"ring/{policy.name}",
            details={
                "before": None if previous is None else json.loads(previous),
                "after": json.loads(current),
            },
        )
        await self._store.set_meta(key, current, audit=[changed])
        self._audit.notify()

    async def sweep(self) -> None:
        """Destroy keys on the token that the store does not hold (or holds as destroyed).

        Only labels under ``signer/<ring>/`` of configured rings are considered: the token
        belongs to this deployment, but never touch what is not ours by name.

        With several processes, only the leader sweeps, and it is safe because only the leader
        generates keys, under its fence: the sweep reads the store after the lease was taken,
        so it sees every key a former leader managed to insert, and a key a former leader made
        but had not inserted can never be inserted now (its fenced insert is refused at the old
        epoch). The one key missing from the store that must survive is this process's own
        generation in flight under the current epoch: the ring's lock keeps the sweep out while
        a generation runs, and a key whose insert may yet land (``signer.keygen``) is kept.
        """
        if not self.leader:
            return
        epoch = self._lease.epoch
        for policy in self._service.settings.rings:
            async with self._locks[policy.name]:
                # Token first, then the store, then the lease again: a key listed here existed
                # before the store read, so if it is in the store it is seen; and if the lease
                # still holds the same epoch, no other leader made a key in between (the epoch
                # rises whenever the lease changes hands). A leader paused past its lease finds
                # a new epoch here and destroys nothing.
                refs = await self._backend.list_refs(f"signer/{policy.name}/")
                records = await self._store.keys(policy.name)
                if not await self._lease.renew() or self._lease.epoch != epoch:
                    log.warning("sweep stopped: lifecycle leadership changed while sweeping")
                    return
                held = {r.key_id for r in records if r.state in HELD_STATES}
                held |= self._maker.in_flight(policy.name, epoch)
                for ref in refs:
                    if ref.key_id in held:
                        continue
                    log.warning(
                        "destroying key on the token with no live record (interrupted generate "
                        "or destroy)",
                        extra={"ring": policy.name, "label": ref.label},
                    )
                    await self._backend.destroy(ref)
        self._swept_epoch = self._lease.epoch

    async def tick(self, policy: RingPolicy) -> int | None:
        """Apply every transition of ``policy``'s ring that is due now; return the next time.

        A follower only reloads: transitions and new keys are the leader's.
        """
        if not self.leader:
            await self.reload()
            return self._next_at.get(policy.name)
        async with self._locks[policy.name]:
            for _ in range(MAX_ROUNDS):
                records = await self._store.keys(policy.name)
                plan = lifecycle.step(policy, records, self._now())
                if plan.generate is None:
                    await self._maker.settle(policy.name, records)
                if plan.empty:
                    self._service.refresh(policy.name, records)
                    self._next_at[policy.name] = plan.next_at
                    return plan.next_at
                await self._apply(policy, records, plan.changes)
                if plan.generate is not None:
                    await self._generate(policy, plan.generate)
            raise Conflict(f"ring {policy.name} did not settle in {MAX_ROUNDS} rounds")

    async def _apply(
        self,
        policy: RingPolicy,
        records: Sequence[KeyRecord],
        changes: Sequence[Change],
        *,
        actor: str = SYSTEM,
    ) -> None:
        """Persist ``changes`` and their audit records atomically, then switch the view."""
        if not changes:
            return
        updates = [KeyUpdate(record=c.after, expected=c.before.state) for c in changes]
        entries = [self._audit_change(c, actor) for c in changes]
        try:
            await self._store.update_keys(updates, audit=entries, fence=self._lease.fence())
        except FencedOut as exc:
            self._lease.fenced_out(exc)
            if actor == SYSTEM:
                raise
            # An operator's request (rotate, revoke, an approved destroy): handled from here on
            # as a follower handles one, unfenced; the compare-and-set on every key's state
            # still refuses it if the new leader moved a key since it was read.
            await self._store.update_keys(updates, audit=entries)
        self._audit.notify()
        written = {r.kid: r for r in records} | {c.after.kid: c.after for c in changes}
        self._service.refresh(policy.name, list(written.values()))
        for change in changes:
            log.info(
                "key %s: %s -> %s (%s)",
                change.after.kid,
                change.before.state.value,
                change.after.state.value,
                change.reason,
                extra={"ring": policy.name},
            )
            if change.after.state is KeyState.DESTROYED:
                await self._destroy(ref_of(change.after))

    async def _destroy(self, ref: KeyRef) -> None:
        """Destroy a key whose record already says ``destroyed``; if the token refuses, the key
        is remembered and ``finish_destroys`` tries again."""
        self._undestroyed[ref.key_id] = ref
        await self._backend.destroy(ref)
        del self._undestroyed[ref.key_id]

    async def finish_destroys(self) -> None:
        """Destroy again each key whose destruction failed after its record said ``destroyed``
        (the record and its audit entry are written first). A key that fails again is logged
        and kept for the next round; it never holds up the rings' ticks."""
        for ref in list(self._undestroyed.values()):
            try:
                await self._destroy(ref)
            except SignerError as exc:
                log.warning(
                    "key recorded destroyed is still on the token (%s); will retry",
                    exc.code,
                    extra={"label": ref.label},
                )
            else:
                log.info("key recorded destroyed is now gone from the token: %s", ref.label)

    def _audit_change(self, change: Change, actor: str) -> AuditEntry:
        return self._audit.make(**change_record(change, actor))

    async def _generate(self, policy: RingPolicy, why: Generate, actor: str = SYSTEM) -> KeyRecord:
        record = await self._maker.make(policy, why, epoch=self._lease.epoch)
        generated = self._audit.make(
            actor=actor,
            action="key.generate",
            target=f"ring/{policy.name}/{record.kid}",
            details={
                "ring": policy.name,
                "kid": record.kid,
                "alg": record.alg.value,
                "label": record.label,
                "state": record.state.value,
                "purpose": why.value,
            },
        )
        try:
            await self._store.insert_key(record, audit=[generated], fence=self._lease.fence())
        except FencedOut as exc:
            # Refused atomically: no record can ever name this key, so it goes now rather
            # than waiting for the next leader's sweep.
            self._lease.fenced_out(exc)
            await self._maker.abandon(policy.name, why)
            raise
        except StaleWrite:
            stored = await self._store.get_key(record.kid)
            if stored is None or stored.key_id != record.key_id:
                await self._maker.abandon(policy.name, why)  # the ring moved on without it
                raise
            # An earlier attempt's insert had committed; only its answer was lost.
        self._maker.landed(policy.name, why)
        self._audit.notify()
        self._service.refresh(policy.name, await self._store.keys(policy.name))
        log.info(
            "generated key %s (%s)",
            record.kid,
            "pre-published standby"
            if why is Generate.STANDBY
            else "signs at once: the ring had no key that could sign",
            extra={"ring": policy.name},
        )
        return record

    async def rotate(
        self, ring: str, *, immediate: bool, reason: str = "", actor: str = SYSTEM
    ) -> RotationAccepted:
        """Start a rotation: safe by default (the pre-published standby takes over when ready)."""
        log.info(
            "rotation of ring %s requested%s: %s",
            ring,
            " (immediate)" if immediate else "",
            reason or "no reason given",
        )
        policy = self._service.view(ring).policy
        if immediate and not policy.allow_immediate_rotation:
            raise InvalidField(
                f"ring {ring!r} does not allow immediate rotation "
                "(allow_immediate_rotation = false); omit 'immediate' for a safe rotation",
                field="immediate",
            )
        async with self._locks[ring]:
            records = await self._store.keys(ring)
            now = self._now()
            try:
                if immediate:
                    changes: Sequence[Change] = lifecycle.rotate_immediately(records, now)
                else:
                    changes = [lifecycle.request_rotation(records, now)]
            except lifecycle.LifecycleError as exc:
                raise Conflict(str(exc)) from None
            await self._apply(policy, records, changes, actor=actor)
            pending = [r for r in records if r.state is KeyState.PENDING]
            activates_at = now
            if not immediate and pending:
                activates_at = max(now, min(lifecycle.ready_at(policy, p) for p in pending))
        self._wake.set()
        await self._follow_up(ring, self.tick(policy), "the rotation's next steps")
        return RotationAccepted(ring=ring, requested_at=now, activates_at=activates_at)

    async def revoke(self, kid: KeyId, reason: str, *, actor: str = SYSTEM) -> RevocationDone:
        """Kill-switch: the key leaves the JWKS and stops signing at once."""
        record = await self._store.get_key(kid)
        policy = self.policy_of(record, kid)
        async with self._locks[policy.name]:
            records = await self._store.keys(policy.name)
            try:
                revocation = lifecycle.revoke(records, kid, reason, self._now())
            except lifecycle.LifecycleError as exc:
                raise Conflict(str(exc)) from None
            await self._apply(policy, records, revocation.changes, actor=actor)
            if revocation.generate is not None and self.leader:
                made = self._generate(policy, revocation.generate, actor)
                await self._follow_up(policy.name, made, "the revocation's new key")
            elif revocation.generate is not None:
                # Keys are the leader's to make (``sweep``); the change feed wakes it now.
                log.info("ring %s: the lifecycle leader makes its new key", policy.name)
        await self._follow_up(policy.name, self.tick(policy), "the revocation's next steps")
        revoked = next(c.after for c in revocation.changes if c.after.kid == kid)  # as written
        signing = self._service.view(policy.name).signing
        return RevocationDone(revoked=revoked, active=signing.record.kid if signing else None)

    async def _follow_up(self, ring: str, step: Awaitable[object], what: str) -> None:
        """Run ``step``, the part of an operator's request that comes after its change was
        written. If it fails, the change stands and the request is answered from what was
        written (a revocation is never reported as failed once it took effect); the scheduler,
        woken now, does the rest and retries while the HSM or the store is down."""
        try:
            await step
        except SignerError as exc:
            self._wake.set()
            log.warning(
                "ring %s: %s failed after the change was written (%s); the scheduler retries",
                ring,
                what,
                exc.code,
            )

    async def destroy_once(self, kid: KeyId, *, actor: str) -> KeyRecord:
        """Destroy a retired or revoked key now (an approved request); a no-op if destroyed."""
        return await self._operate(kid, lifecycle.destroy_early, KeyState.DESTROYED, actor=actor)

    async def reinstate_once(self, kid: KeyId, *, actor: str) -> KeyRecord:
        """Back a revoked or retired key into the JWKS as draining; a no-op if it already is."""
        return await self._operate(kid, lifecycle.reinstate, KeyState.DRAINING, actor=actor)

    async def _operate(
        self,
        kid: KeyId,
        operation: Callable[[Sequence[KeyRecord], KeyId, int], Change],
        done: KeyState,
        *,
        actor: str,
    ) -> KeyRecord:
        policy = self.policy_of(await self._store.get_key(kid), kid)
        async with self._locks[policy.name]:
            records = await self._store.keys(policy.name)
            current = next(r for r in records if r.kid == kid)
            if current.state is done:
                return current  # a resumed run after a crash: the effect is already there
            try:
                change = operation(records, kid, self._now())
            except lifecycle.LifecycleError as exc:
                raise Conflict(str(exc)) from None
            await self._apply(policy, records, [change], actor=actor)
        self._wake.set()
        return change.after

    def policy_of(self, record: KeyRecord | None, kid: KeyId) -> RingPolicy:
        """The policy of the ring that holds ``record``; ``UnknownKey`` if none does."""
        if record is None or record.ring not in self._locks:
            raise UnknownKey(f"no key with kid {kid!r}")
        return self._service.view(record.ring).policy

    async def run(self) -> None:
        """Tick every ring whenever something is due, forever (cancel to stop)."""
        listener = None
        if self._shared:
            listener = asyncio.create_task(self._listen(), name="lifecycle-changes")
        try:
            await self._loop()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _loop(self) -> None:
        failures = 0
        while True:
            # Cleared before the ticks: a rotate or revoke that lands during them wakes us again.
            self._wake.clear()
            await self.finish_destroys()
            try:
                if await self._lease.renew():
                    if self._shared and self._swept_epoch != self._lease.epoch:
                        await self.sweep()  # taken over mid-run: what the last leader left
                    for policy in self._service.settings.rings:
                        await self.tick(policy)
                    delay = self._delay()
                    if self._shared:
                        delay = min(delay, LEASE_TTL / 3)  # renew the lease in time
                else:
                    await self.reload()
                    delay = FOLLOW_SECONDS
                failures = 0
            except FencedOut:
                delay = FOLLOW_SECONDS  # logged where refused; follow from the next round
            except (SignerError, StaleWrite) as exc:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("lifecycle tick failed (%s); retrying in %.0fs", exc.code, delay)
            if self._undestroyed:
                delay = min(delay, DESTROY_RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _listen(self) -> None:
        """Wake the loop whenever the store says a ring changed, in whichever process.

        A follower then rebuilds its views at once instead of at its next re-read; the leader
        ticks, so an operator's request served by a follower (a rotation, a revocation that
        needs a new key) is acted on at once. Stores with no change feed never wake it.
        """
        async for ring in self._store.watch_changes():
            log.debug("store change in ring %s", ring)
            self._wake.set()

    def _delay(self) -> float:
        due = [t for t in self._next_at.values() if t is not None]
        if not due:
            return RECONCILE_SECONDS
        # Due times are whole seconds; wake just after the boundary so `now >= due` holds.
        wait = min(due) - self._service.clock()
        return min(RECONCILE_SECONDS, max(0.0, math.ceil(wait * 1000) / 1000 + 0.005))
