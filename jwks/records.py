"""Key records: the lifecycle facts about one key, as the state store keeps them.

A record is the whole truth about a key's lifecycle; the HSM holds only the material. Times are
integer Unix seconds, like JWT ``iat``/``exp``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NewType

from jwks.algorithms import Alg
from jwks.thumbprint import KeyId

RingName = NewType("RingName", str)


class KeyState(enum.StrEnum):
    """DESIGN.md: pending → active → draining → retired → destroyed, and revoked."""

    PENDING = "pending"
    ACTIVE = "active"
    DRAINING = "draining"
    RETIRED = "retired"
    REVOKED = "revoked"
    DESTROYED = "destroyed"


# States whose public key is served in the JWKS.
PUBLISHED_STATES = frozenset({KeyState.PENDING, KeyState.ACTIVE, KeyState.DRAINING})
# States whose private key must still exist on the token.
HELD_STATES = frozenset(set(KeyState) - {KeyState.DESTROYED})


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One key of a ring, with every lifecycle timestamp it has reached."""

    kid: KeyId  # RFC 7638 thumbprint of ``jwk``
    ring: RingName
    alg: Alg
    key_id: str  # hex CKA_ID on the token
    label: str  # CKA_LABEL on the token
    jwk: Mapping[str, str] = field(hash=False)  # public members only (kty, crv, x, y, n, e)
    state: KeyState
    created_at: int
    published_at: int | None = None
    activated_at: int | None = None
    draining_at: int | None = None
    retired_at: int | None = None
    revoked_at: int | None = None
    destroyed_at: int | None = None
    revoke_reason: str | None = None
    exp_watermark: int | None = None  # the latest ``exp`` this key has signed (or reserved)
    rotate_requested_at: int | None = None  # an operator asked to rotate this active key early
    emergency: bool = False  # activated without a full pre-publication (revocation, immediate)

    def with_state(self, state: KeyState, now: int, **changes: object) -> KeyRecord:
        """A copy moved to ``state`` with its timestamp set to ``now``."""
        stamp = {
            KeyState.PENDING: "published_at",
            KeyState.ACTIVE: "activated_at",
            KeyState.DRAINING: "draining_at",
            KeyState.RETIRED: "retired_at",
            KeyState.REVOKED: "revoked_at",
            KeyState.DESTROYED: "destroyed_at",
        }[state]
        return replace(self, state=state, **{stamp: now}, **changes)  # type: ignore[arg-type]
