"""How lifecycle events read in the audit log and the admin API: key changes and ring policies."""

from __future__ import annotations

from typing import Any

from jwks.lifecycle import Change
from jwks.records import KeyState
from signer.settings import RingPolicy

# The audit verb of moving a key into each state.
_VERBS = {
    KeyState.PENDING: "publish",
    KeyState.ACTIVE: "activate",
    KeyState.DRAINING: "drain",
    KeyState.RETIRED: "retire",
    KeyState.REVOKED: "revoke",
    KeyState.DESTROYED: "destroy",
}
_BACKOUT = frozenset({KeyState.REVOKED, KeyState.RETIRED})


def change_record(change: Change, actor: str) -> dict[str, Any]:
    """The audit fields (``actor``, ``action``, ``target``, ``details``) of one key change."""
    before, after = change.before.state, change.after.state
    verb = "reinstate" if after is KeyState.DRAINING and before in _BACKOUT else _VERBS[after]
    details: dict[str, Any] = {
        "ring": change.after.ring,
        "kid": change.after.kid,
        "from": before.value,
        "to": after.value,
        "reason": change.reason,
    }
    if after is KeyState.ACTIVE:
        details["emergency"] = change.after.emergency
    return {
        "actor": actor,
        "action": f"key.{verb}",
        "target": f"ring/{change.after.ring}/{change.after.kid}",
        "details": details,
    }


def policy_document(policy: RingPolicy) -> dict[str, Any]:
    """A ring's policy as JSON: what the admin API shows and the audit log records."""
    return {
        "alg": policy.alg.value,
        "rotation_period": policy.rotation_period,
        "prepublish": policy.prepublish,
        "token_max_ttl": policy.token_max_ttl,
        "jwks_max_age": policy.jwks_max_age,
        "clock_skew": policy.clock_skew,
        "retain": policy.retain,
        "allow_immediate_rotation": policy.allow_immediate_rotation,
        "approvals": {
            op: {"group": rule.group, "required": rule.required}
            for op, rule in sorted(policy.approvals.items())
        },
    }
