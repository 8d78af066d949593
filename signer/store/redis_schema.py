"""How the Redis store lays out its data: key names, record encoding and its Lua scripts.

Every name starts with the deployment's prefix (default ``signer:``)::

    key:<kid>          hash   one field per KeyRecord attribute, each a JSON value, and ``seq``
    keys               zset   every kid, scored by insertion order (``seq``)
    ring:<ring>        zset   the kids of one ring, same scores
    keyseq             string the last ``seq`` handed out
    key_id:<key_id>    string the kid holding this token key id (SQLite's UNIQUE key_id)
    active:<ring>      string the ring's active kid (SQLite's one_active_per_ring index)
    audit              list   record JSON, record ``seq`` at index ``seq - 1 - base``
    audit:last         hash   action -> seq of its newest record (``audit_last(action=…)``)
    audit:anchor       hash   ``seq`` and ``hash`` of the cut the last prune made, and ``base``
                       (below); absent until the first prune, which is as if both were 0
    approval:<id>      hash   ``state``, ``version``, ``body`` (the request's JSON)
    approvals          zset   approval ids scored by ``created_at``
    signing_request:<id>  hash  the same for a signing request (signer.codesign)
    signing_requests   zset   signing request ids scored by ``created_at``
    meta               hash   small named values
    lease:<name>       string ``<epoch>:<owner>``, expiring (PX) when the lease does
    lease:<name>:last  hash   ``epoch`` and ``owner`` of the latest grant (outlives the lease)
    changes            pub/sub channel: the ring of each key-record write
    txn:<id>           string ``1`` once a transaction's ``EXEC`` ran, ``0`` once its lost reply
                       was resolved as not committed; expires after a minute (redis_transaction)

Fields are JSON values rather than one JSON document per record so the watermark script can read
``state`` and raise ``exp_watermark`` without a JSON codec in Lua (whose numbers are doubles).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from jwks.algorithms import Alg
from jwks.records import KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId

_RECORD_FIELDS: Final = tuple(f.name for f in fields(KeyRecord))

# Take or renew a lease; return its epoch, or nil (false) while another owner holds it.
# KEYS: lease, lease:last.  ARGV: owner, ttl in milliseconds.
# The epoch moves on only when the lease goes to a different owner than the last grant's, so a
# renewal or a retake by the same owner with nobody in between keeps it (base.try_lease).
LEASE_SCRIPT: Final = """
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, ':', 1, true)
  if string.sub(held, sep + 1) ~= ARGV[1] then
    return false
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(held, 1, sep - 1))
end
local last = redis.call('HMGET', KEYS[2], 'epoch', 'owner')
local epoch = tonumber(last[1]) or 0
if epoch == 0 or last[2] ~= ARGV[1] then
  epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
  redis.call('HSET', KEYS[2], 'owner', ARGV[1])
end
redis.call('SET', KEYS[1], epoch .. ':' .. ARGV[1], 'PX', ARGV[2])
return epoch
"""

# Raise an active key's watermark to at least ARGV[1]; return the stored value as text, or nil
# (false) if the key is not active. KEYS: key:<kid>. The new value is written as the caller's
# text, never through a Lua number, so large integers keep every digit.
WATERMARK_SCRIPT: Final = """
if redis.call('HGET', KEYS[1], 'state') ~= '"active"' then
  return false
end
local current = redis.call('HGET', KEYS[1], 'exp_watermark')
local stored = tonumber(current)
if stored == nil or tonumber(ARGV[1]) > stored then
  redis.call('HSET', KEYS[1], 'exp_watermark', ARGV[1])
  return ARGV[1]
end
return current
"""


# The audit scripts read the chain's list with its anchor hash: ``seq`` and ``hash`` of the cut
# the last prune made (records up to it are no longer part of the log), and ``base``, the seq
# of the record just before the list's first element (a prune trims the list in steps, so the
# base climbs to the anchor's seq). Record ``s`` is at index ``s - 1 - base``. In Lua so that
# the list and its anchor are read as of one instant.

# {anchor seq, anchor hash, {the stored records with seq > ARGV[1], at most ARGV[2] of them
# (-1: all)}}. KEYS: audit, audit:anchor. Compared with the length first: a huge ARGV[1] is a
# float here, which LRANGE refuses.
AUDIT_RANGE_SCRIPT: Final = """
local anchor = redis.call('HMGET', KEYS[2], 'seq', 'hash', 'base')
local start = math.max(tonumber(ARGV[1]), tonumber(anchor[1] or '0')) - tonumber(anchor[3] or '0')
local lines = {}
if start < redis.call('LLEN', KEYS[1]) then
  local stop = -1
  if tonumber(ARGV[2]) >= 0 then
    stop = start + tonumber(ARGV[2]) - 1
  end
  lines = redis.call('LRANGE', KEYS[1], start, stop)
end
return {anchor[1] or '0', anchor[2] or '', lines}
"""

# The newest record, or the newest of action ARGV[1] (nil, i.e. false, if none is stored).
# KEYS: audit, audit:anchor, audit:last.
AUDIT_LAST_SCRIPT: Final = """
if ARGV[1] == '' then
  return redis.call('LINDEX', KEYS[1], -1)
end
local seq = redis.call('HGET', KEYS[3], ARGV[1])
if not seq then
  return false
end
local anchor = redis.call('HMGET', KEYS[2], 'seq', 'base')
if tonumber(seq) <= tonumber(anchor[1] or '0') then
  return false
end
return redis.call('LINDEX', KEYS[1], tonumber(seq) - 1 - tonumber(anchor[2] or '0'))
"""

# Trim up to ARGV[1] records the anchor has cut from the head of the list; how many it trimmed.
# KEYS: audit, audit:anchor. A prune runs it until it answers 0: trimming a million at once
# would hold the (single-threaded) server for the whole LTRIM.
AUDIT_TRIM_SCRIPT: Final = """
local anchor = redis.call('HMGET', KEYS[2], 'seq', 'base')
local base = tonumber(anchor[2] or '0')
local count = math.min(tonumber(ARGV[1]), tonumber(anchor[1] or '0') - base)
if count <= 0 then
  return 0
end
redis.call('LTRIM', KEYS[1], count, -1)
redis.call('HSET', KEYS[2], 'base', string.format('%d', base + count))
return count
"""


@dataclass(frozen=True, slots=True)
class Names:
    """The key names of one deployment (one prefix)."""

    prefix: str

    def key(self, kid: str) -> str:
        """The hash of one key record."""
        return f"{self.prefix}key:{kid}"

    @property
    def keys(self) -> str:
        """Every kid in insertion order."""
        return f"{self.prefix}keys"

    def ring(self, ring: str) -> str:
        """The kids of ``ring`` in insertion order."""
        return f"{self.prefix}ring:{ring}"

    @property
    def keyseq(self) -> str:
        """The insertion counter."""
        return f"{self.prefix}keyseq"

    def key_id(self, key_id: str) -> str:
        """Which kid holds a token key id."""
        return f"{self.prefix}key_id:{key_id}"

    def active(self, ring: str) -> str:
        """The active kid of ``ring``."""
        return f"{self.prefix}active:{ring}"

    @property
    def audit(self) -> str:
        """The audit chain."""
        return f"{self.prefix}audit"

    @property
    def audit_last(self) -> str:
        """The newest seq of each action."""
        return f"{self.prefix}audit:last"

    @property
    def audit_anchor(self) -> str:
        """Where the stored chain starts, once pruned."""
        return f"{self.prefix}audit:anchor"

    def document(self, kind: str, doc_id: str) -> str:
        """One versioned document (an approval or a signing request)."""
        return f"{self.prefix}{kind}:{doc_id}"

    def documents(self, kind: str) -> str:
        """The ids of ``kind``'s documents by creation time."""
        return f"{self.prefix}{kind}s"

    @property
    def meta(self) -> str:
        """Small named values."""
        return f"{self.prefix}meta"

    def lease(self, name: str) -> str:
        """The live lease (expires with it)."""
        return f"{self.prefix}lease:{name}"

    def lease_last(self, name: str) -> str:
        """The latest grant of a lease (for epochs)."""
        return f"{self.prefix}lease:{name}:last"

    @property
    def changes(self) -> str:
        """The change channel."""
        return f"{self.prefix}changes"

    def txn(self, txn_id: str) -> str:
        """One transaction attempt's commit marker."""
        return f"{self.prefix}txn:{txn_id}"


def lease_value(epoch: int, owner: str) -> str:
    """What ``lease:<name>`` holds while ``owner`` has the lease at ``epoch``."""
    return f"{epoch}:{owner}"


def encode_record(record: KeyRecord, seq: int) -> dict[str, str]:
    """The hash fields of ``record``: each attribute as JSON, and its insertion ``seq``."""
    encoded = {name: json.dumps(_plain(getattr(record, name))) for name in _RECORD_FIELDS}
    return encoded | {"seq": str(seq)}


def decode_record(values: Mapping[str, str]) -> KeyRecord:
    """The record a hash holds (``encode_record``'s inverse)."""
    decoded: dict[str, Any] = {name: json.loads(values[name]) for name in _RECORD_FIELDS}
    decoded["kid"] = KeyId(decoded["kid"])
    decoded["ring"] = RingName(decoded["ring"])
    decoded["alg"] = Alg(decoded["alg"])
    decoded["state"] = KeyState(decoded["state"])
    return KeyRecord(**decoded)


def _plain(value: object) -> object:
    if isinstance(value, Alg | KeyState):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    return value
