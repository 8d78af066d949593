"""Property-based tests of the key lifecycle: random schedules never break a DESIGN.md invariant.

A state machine drives the pure core the way the keeper does (settle ``step`` to a fixed point,
generate keys, revoke, rotate) through random clock advances, signings, operator requests and
crashes between a plan's atomic write and its key generation, and checks every invariant after
each move.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from jwks import lifecycle
from jwks.algorithms import Alg
from jwks.lifecycle import Generate
from jwks.records import PUBLISHED_STATES, KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId

# Every edge the lifecycle may take (DESIGN.md); anything else is a bug.
ALLOWED = {
    (KeyState.PENDING, KeyState.ACTIVE),
    (KeyState.ACTIVE, KeyState.DRAINING),
    (KeyState.DRAINING, KeyState.RETIRED),
    (KeyState.RETIRED, KeyState.DESTROYED),
    (KeyState.PENDING, KeyState.REVOKED),
    (KeyState.ACTIVE, KeyState.REVOKED),
    (KeyState.DRAINING, KeyState.REVOKED),
    (KeyState.RETIRED, KeyState.REVOKED),
}
STAMPS = (
    "published_at",
    "activated_at",
    "draining_at",
    "retired_at",
    "revoked_at",
    "destroyed_at",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    rotation_period: int
    prepublish: int
    clock_skew: int
    retain: int
    jwks_max_age: int
    token_max_ttl: int


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    jwks_max_age = draw(st.integers(1, 50))
    prepublish = draw(st.integers(jwks_max_age, 200))
    return Policy(
        jwks_max_age=jwks_max_age,
        prepublish=prepublish,
        rotation_period=draw(st.integers(prepublish + 1, 600)),
        clock_skew=draw(st.integers(0, 30)),
        retain=draw(st.integers(1, 500)),
        token_max_ttl=draw(st.integers(1, 300)),
    )


@dataclass(frozen=True, slots=True)
class Token:
    kid: KeyId
    iat: int
    exp: int
    seq: int  # order of the signing among all moves (wall-clock times can step back)
    real: int  # elapsed real time at signing


class Lifecycle(RuleBasedStateMachine):
    """One ring, driven like the keeper drives it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000  # the signer's wall clock, which NTP may step back
        self.real = 0  # elapsed real time, which never goes back
        self.born: dict[KeyId, int] = {}  # real time each key was published
        self.seq = itertools.count()
        self.ended: dict[KeyId, int] = {}  # move at which a key was revoked or destroyed
        self.records: dict[KeyId, KeyRecord] = {}
        self.tokens: list[Token] = []
        self.history: dict[KeyId, list[KeyRecord]] = {}
        self.ids = itertools.count()
        self.policy = Policy(
            rotation_period=0, prepublish=0, clock_skew=0, retain=0, jwks_max_age=0, token_max_ttl=0
        )

    # -- the shell, as the keeper runs it --------------------------------------------------

    def _write(self, record: KeyRecord) -> None:
        if record.state in (KeyState.REVOKED, KeyState.DESTROYED):
            self.ended.setdefault(record.kid, next(self.seq))
        self.records[record.kid] = record
        self.history.setdefault(record.kid, []).append(record)

    def _generate(self, why: Generate) -> None:
        kid = KeyId(f"k{next(self.ids)}")
        self.born[kid] = self.real
        active = why is Generate.EMERGENCY
        self._write(
            KeyRecord(
                kid=kid,
                ring=RingName("r"),
                alg=Alg.ES256,
                key_id=kid,
                label=f"signer/r/{kid}",
                jwk={},
                state=KeyState.ACTIVE if active else KeyState.PENDING,
                created_at=self.now,
                published_at=self.now,
                activated_at=self.now if active else None,
                emergency=active,
            )
        )

    def _apply(self, changes: tuple[lifecycle.Change, ...] | list[lifecycle.Change]) -> None:
        for change in changes:
            assert self.records[change.before.kid] == change.before  # compare-and-set holds
            self._write(change.after)

    def _settle(self, *, crash_before_generate: bool = False) -> None:
        for _ in range(8):
            plan = lifecycle.step(self.policy, list(self.records.values()), self.now)
            if plan.empty:
                return
            self._apply(plan.changes)
            if plan.generate is not None:
                if crash_before_generate:
                    return  # the key was never made (or is an orphan the sweep destroys)
                self._generate(plan.generate)
        raise AssertionError("step did not settle")

    def _active(self) -> list[KeyRecord]:
        return [r for r in self.records.values() if r.state is KeyState.ACTIVE]

    # -- moves -----------------------------------------------------------------------------

    @initialize(policy=policies())
    def start(self, policy: Policy) -> None:
        self.policy = policy
        self._settle()

    @rule(seconds=st.one_of(st.integers(0, 5), st.integers(0, 700), st.integers(0, 5000)))
    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.real += seconds
        self._settle()

    @rule(offset=st.integers(-1, 1))
    def advance_to_the_next_due_time(self, offset: int) -> None:
        """Land on the boundaries, where off-by-one mistakes live."""
        plan = lifecycle.step(self.policy, list(self.records.values()), self.now)
        if plan.next_at is not None and plan.next_at + offset > self.now:
            self.advance(plan.next_at + offset - self.now)

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data(), offset=st.integers(-1, 1))
    def advance_to_a_token_expiry(self, data: st.DataObject, offset: int) -> None:
        token = data.draw(st.sampled_from(self.tokens))
        target = token.exp + self.policy.clock_skew + offset
        if target > self.now:
            self.advance(target - self.now)

    @rule(data=st.data())
    def clock_steps_back(self, data: st.DataObject) -> None:
        """An NTP correction within ``clock_skew``, which is what the skew allows for."""
        if self.policy.clock_skew:
            self.now -= data.draw(st.integers(1, self.policy.clock_skew))
            self._settle()

    @rule(ttl=st.integers(1, 300))
    def sign(self, ttl: int) -> None:
        ttl = min(ttl, self.policy.token_max_ttl)
        active = self._active()
        if not active:
            return  # the signer answers 409; a crash left no key yet
        (key,) = active
        # DESIGN.md: only a key relying parties have seen for `prepublish` signs, except an
        # emergency promotion (which the audit record says).
        if not key.emergency:
            assert self.real - self.born[key.kid] >= self.policy.prepublish
            assert self.real - self.born[key.kid] >= self.policy.jwks_max_age
        exp = self.now + ttl
        assert exp - self.now <= self.policy.token_max_ttl
        self._write(replace(key, exp_watermark=max(key.exp_watermark or 0, exp)))
        self.tokens.append(
            Token(kid=key.kid, iat=self.now, exp=exp, seq=next(self.seq), real=self.real)
        )

    @rule()
    def request_rotation(self) -> None:
        try:
            change = lifecycle.request_rotation(list(self.records.values()), self.now)
        except lifecycle.LifecycleError:
            return
        self._apply([change])
        self._settle()

    @rule()
    def rotate_immediately(self) -> None:
        try:
            changes = lifecycle.rotate_immediately(list(self.records.values()), self.now)
        except lifecycle.LifecycleError:
            return
        self._apply(changes)
        self._settle()

    @precondition(lambda self: bool(self.records))
    @rule(data=st.data(), crash=st.booleans())
    def revoke(self, data: st.DataObject, crash: bool) -> None:
        kid = data.draw(st.sampled_from(sorted(self.records)))
        try:
            revocation = lifecycle.revoke(list(self.records.values()), kid, "test", self.now)
        except lifecycle.LifecycleError:
            assert self.records[kid].state in (KeyState.REVOKED, KeyState.DESTROYED)
            return
        was_active = self.records[kid].state is KeyState.ACTIVE
        self._apply(revocation.changes)
        if crash:
            return  # crashed before generating; the restart settles below in `restart`
        if revocation.generate is not None:
            self._generate(revocation.generate)
        if was_active:
            # The kill-switch took effect at once: another key signs, the kid is unpublished.
            assert [r.kid for r in self._active()] != [kid]
            assert len(self._active()) == 1
        self._settle()

    @rule()
    def crash_mid_settle(self) -> None:
        """A crash after a plan's atomic write but before the key it asked for was made."""
        self._settle(crash_before_generate=True)

    @rule()
    def restart(self) -> None:
        """A restart settles from the persisted records alone."""
        self._settle()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def at_most_one_active_key(self) -> None:
        assert len(self._active()) <= 1

    @invariant()
    def no_valid_token_loses_its_key(self) -> None:
        """A key stays in the JWKS until every token it signed has expired (+ skew).

        Validity is measured in real elapsed time, as a relying party with a good clock sees
        it: the signer's own clock may have been stepped back since it signed.
        """
        published = {r.kid for r in self.records.values() if r.state in PUBLISHED_STATES}
        for token in self.tokens:
            record = self.records[token.kid]
            if record.revoked_at is not None:
                continue  # the kill-switch cuts tokens off on purpose
            if self.real <= token.real + (token.exp - token.iat) + self.policy.clock_skew:
                assert token.kid in published, (token, record)

    @invariant()
    def transitions_follow_the_state_machine(self) -> None:
        for versions in self.history.values():
            for before, after in itertools.pairwise(versions):
                if before.state is not after.state:
                    assert (before.state, after.state) in ALLOWED, (before, after)
                for stamp in STAMPS:
                    if getattr(before, stamp) is not None:
                        assert getattr(after, stamp) == getattr(before, stamp), stamp

    @invariant()
    def settled_rings_are_a_fixed_point(self) -> None:
        """Step is idempotent: once settled (or after a crash), planning again is stable."""
        records = list(self.records.values())
        first = lifecycle.step(self.policy, records, self.now)
        assert lifecycle.step(self.policy, records, self.now) == first
        if first.empty and first.next_at is not None:
            assert first.next_at > self.now
            assert lifecycle.step(self.policy, records, first.next_at - 1).empty

    @invariant()
    def settled_ring_has_one_signer_and_a_standby(self) -> None:
        plan = lifecycle.step(self.policy, list(self.records.values()), self.now)
        if plan.empty:
            states = [r.state for r in self.records.values()]
            assert states.count(KeyState.ACTIVE) == 1
            assert states.count(KeyState.PENDING) >= 1

    @invariant()
    def revoked_and_destroyed_keys_never_sign_again(self) -> None:
        for token in self.tokens:
            if token.kid in self.ended:
                assert token.seq < self.ended[token.kid]


Lifecycle.TestCase.settings = settings(settings(), stateful_step_count=50)
TestLifecycle = Lifecycle.TestCase
