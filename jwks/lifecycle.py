"""The key lifecycle of a ring as pure functions of its policy, its records and ``now``.

States (DESIGN.md): ``pending → active → draining → retired → destroyed``, and ``revoked`` from
any state before ``destroyed``.

- A ring always keeps a **standby**: when no key is pending, one must be generated and published.
- The active key rotates when its period is over (or an operator asked), but only to a pending
  key that relying parties have had in the JWKS for at least ``prepublish``.
- A draining key leaves the JWKS only once every token it signed has expired: ``now`` past its
  ``exp`` watermark plus ``clock_skew``.
- A retired key is destroyed after ``retain``; a revoked key waits for an approved destroy.

``step`` returns what is due now and when to look again; the shell persists the changes (all of a
plan's changes in one atomic write), performs the HSM side, and calls ``step`` again until the
plan is empty. Calling ``step`` twice on the same records and ``now`` gives the same plan, so a
crash between any two writes converges on restart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from jwks.records import PUBLISHED_STATES, KeyRecord, KeyState
from jwks.thumbprint import KeyId


class Policy(Protocol):
    """The lifecycle durations of a ring, in seconds."""

    @property
    def rotation_period(self) -> int: ...
    @property
    def prepublish(self) -> int: ...
    @property
    def clock_skew(self) -> int: ...
    @property
    def retain(self) -> int: ...
    @property
    def jwks_max_age(self) -> int: ...


class Generate(enum.StrEnum):
    """Why a new key must be generated."""

    STANDBY = "standby"  # published now, activates after at least ``prepublish``
    EMERGENCY = "emergency"  # the ring has nothing that may sign: activate at once


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One record moving from ``before`` to ``after``, and why."""

    before: KeyRecord
    after: KeyRecord
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What is due: record changes (to apply atomically), then maybe a key to generate."""

    changes: tuple[Change, ...] = ()
    generate: Generate | None = None
    next_at: int | None = None  # when ``step`` will next have something to do

    @property
    def empty(self) -> bool:
        """True when nothing is due now."""
        return not self.changes and self.generate is None


class LifecycleError(ValueError):
    """An operation that the lifecycle rules do not allow."""


def rotation_due(policy: Policy, active: KeyRecord) -> int:
    """When ``active`` should hand over: end of its period, or earlier if an operator asked."""
    assert active.activated_at is not None  # noqa: S101 -- active records always have it
    due = active.activated_at + policy.rotation_period
    if active.rotate_requested_at is not None:
        due = min(due, active.rotate_requested_at)
    return due


def ready_at(policy: Policy, pending: KeyRecord) -> int:
    """When a pending key has been in the JWKS long enough to sign."""
    return (pending.published_at or pending.created_at) + policy.prepublish


def drain_ends(policy: Policy, draining: KeyRecord) -> int:
    """The first second at which ``draining`` may leave the JWKS.

    DESIGN.md: it stays until now > latest signed ``exp`` + ``clock_skew``. A key that never
    signed has no tokens to wait for beyond the moment it stopped signing.
    """
    assert draining.draining_at is not None  # noqa: S101 -- draining records always have it
    last = max(draining.exp_watermark or 0, draining.draining_at)
    return last + policy.clock_skew + 1


def destroy_due(policy: Policy, retired: KeyRecord) -> int:
    """When a retired key's private half is destroyed."""
    assert retired.retired_at is not None  # noqa: S101 -- retired records always have it
    return retired.retired_at + policy.retain


def _by_age(records: Iterable[KeyRecord]) -> list[KeyRecord]:
    return sorted(records, key=lambda r: (r.published_at or r.created_at, r.created_at, r.kid))


def _in(records: Sequence[KeyRecord], state: KeyState) -> list[KeyRecord]:
    return _by_age(r for r in records if r.state is state)


def _promote(
    pending: KeyRecord, active: KeyRecord | None, now: int, *, why: str, emergency: bool
) -> list[Change]:
    """Hand signing from ``active`` (if any) to ``pending`` in one atomic pair of changes."""
    changes = []
    if active is not None:
        drained = active.with_state(KeyState.DRAINING, now, rotate_requested_at=None)
        changes.append(Change(before=active, after=drained, reason=why))
    promoted = pending.with_state(KeyState.ACTIVE, now, emergency=emergency)
    changes.append(Change(before=pending, after=promoted, reason=why))
    return changes


def step(policy: Policy, records: Sequence[KeyRecord], now: int) -> Plan:
    """The transitions of one ring that are due at ``now``, and when to look again."""
    changes: list[Change] = []
    wake: list[int] = []
    active = _in(records, KeyState.ACTIVE)
    pending = _in(records, KeyState.PENDING)
    current = active[-1] if active else None

    if current is not None and pending:
        due = rotation_due(policy, current)
        ready = ready_at(policy, pending[0])
        if now >= due and now >= ready:
            why = "scheduled rotation" if current.rotate_requested_at is None else "requested"
            changes += _promote(pending[0], current, now, why=why, emergency=False)
            current, pending = changes[-1].after, pending[1:]
        else:
            wake.append(max(due, ready))
    elif current is None and pending:
        # Nothing may sign (the active key was revoked and its promotion did not happen, or
        # the ring was changed by hand): the newest standby takes over at once.
        changes += _promote(pending[-1], None, now, why="emergency promotion", emergency=True)
        current, pending = changes[-1].after, pending[:-1]

    for draining in _in(records, KeyState.DRAINING):
        ends = drain_ends(policy, draining)
        if now >= ends:
            retired = draining.with_state(KeyState.RETIRED, now)
            changes.append(Change(before=draining, after=retired, reason="drained"))
        else:
            wake.append(ends)

    for retired in _in(records, KeyState.RETIRED):
        due = destroy_due(policy, retired)
        if now >= due:
            destroyed = retired.with_state(KeyState.DESTROYED, now)
            changes.append(Change(before=retired, after=destroyed, reason="retention over"))
        else:
            wake.append(due)

    generate = None
    if not pending:
        generate = Generate.STANDBY if current is not None else Generate.EMERGENCY
    return Plan(changes=tuple(changes), generate=generate, next_at=min(wake) if wake else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """The changes of a kill-switch, and whether a new key must be generated at once."""

    changes: tuple[Change, ...]
    generate: Generate | None = None
    promoted: KeyId | None = None


def revoke(records: Sequence[KeyRecord], kid: KeyId, reason: str, now: int) -> Revocation:
    """Kill-switch for ``kid``: out of the JWKS and unable to sign at once.

    If it was the active key, the newest pending key is promoted in the same atomic write; if
    there is none, the shell must generate one and activate it at once.
    """
    target = _find(records, kid)
    if target.state in (KeyState.REVOKED, KeyState.DESTROYED):
        raise LifecycleError(f"key {kid} is already {target.state.value}")
    changes = [
        Change(
            before=target,
            after=target.with_state(
                KeyState.REVOKED, now, revoke_reason=reason, rotate_requested_at=None
            ),
            reason=f"revoked: {reason}",
        )
    ]
    if target.state is not KeyState.ACTIVE:
        return Revocation(changes=tuple(changes))
    pending = _in(records, KeyState.PENDING)
    if not pending:
        return Revocation(changes=tuple(changes), generate=Generate.EMERGENCY)
    newest = pending[-1]
    why = f"emergency promotion after revoking {kid}"
    changes += _promote(newest, None, now, why=why, emergency=True)
    return Revocation(changes=tuple(changes), promoted=newest.kid)


def request_rotation(records: Sequence[KeyRecord], now: int) -> Change:
    """Ask the active key to hand over as soon as a pre-published key is ready."""
    active = _in(records, KeyState.ACTIVE)
    if not active:
        raise LifecycleError("the ring has no active key to rotate")
    current = active[-1]
    return Change(
        before=current,
        after=replace(current, rotate_requested_at=now),
        reason="rotation requested",
    )


def rotate_immediately(records: Sequence[KeyRecord], now: int) -> tuple[Change, ...]:
    """Hand over to the oldest pending key now, skipping the rest of its pre-publication."""
    active = _in(records, KeyState.ACTIVE)
    pending = _in(records, KeyState.PENDING)
    if not active or not pending:
        raise LifecycleError("an immediate rotation needs an active key and a pending key")
    return tuple(_promote(pending[0], active[-1], now, why="immediate rotation", emergency=True))


def destroy_early(records: Sequence[KeyRecord], kid: KeyId, now: int) -> Change:
    """Destroy a retired key before ``retain`` ends, or a revoked key (after quorum approval)."""
    target = _find(records, kid)
    if target.state not in (KeyState.RETIRED, KeyState.REVOKED):
        raise LifecycleError(
            f"key {kid} is {target.state.value}; only retired or revoked keys can be destroyed"
        )
    return Change(
        before=target,
        after=target.with_state(KeyState.DESTROYED, now),
        reason="destroyed with quorum approval",
    )


def reinstate(records: Sequence[KeyRecord], kid: KeyId, now: int) -> Change:
    """Back out a revocation or retirement: the key returns to the JWKS as draining.

    Tokens it signed verify again until its watermark (+ skew) passes; it never signs again.
    """
    target = _find(records, kid)
    if target.state not in (KeyState.RETIRED, KeyState.REVOKED):
        raise LifecycleError(
            f"key {kid} is {target.state.value}; only retired or revoked keys can be reinstated"
        )
    back = replace(
        target,
        state=KeyState.DRAINING,
        draining_at=target.draining_at if target.draining_at is not None else now,
        retired_at=None,
        revoked_at=None,
        revoke_reason=None,
    )
    return Change(before=target, after=back, reason="reinstated with quorum approval")


def _find(records: Sequence[KeyRecord], kid: KeyId) -> KeyRecord:
    target = next((r for r in records if r.kid == kid), None)
    if target is None:
        raise LifecycleError(f"no key {kid}")
    return target


def next_jwks_change(policy: Policy, records: Sequence[KeyRecord]) -> int | None:
    """When the set of published keys will next change without an operator acting.

    A rotation is followed at once by a new standby (a key joins), and a drained key leaves.
    The time may be past when the scheduler has not caught up yet.
    """
    times: list[int] = []
    active = _in(records, KeyState.ACTIVE)
    pending = _in(records, KeyState.PENDING)
    if active and pending:
        times.append(max(rotation_due(policy, active[-1]), ready_at(policy, pending[0])))
    times += [drain_ends(policy, r) for r in _in(records, KeyState.DRAINING)]
    return min(times) if times else None


def published(records: Iterable[KeyRecord]) -> list[KeyRecord]:
    """The records whose public keys belong in the JWKS, oldest first."""
    return _by_age(r for r in records if r.state in PUBLISHED_STATES)
