"""Hash-chained audit records (DESIGN.md "Audit"): what is recorded, how it is linked, how checked.

Each line of an export (JSON Lines) is one object with exactly nine members::

    {"seq", "time", "actor", "action", "target", "outcome", "details", "prev", "hash"}

A third party verifies a log from this description alone:

1. ``seq`` is an integer counting up by one from 1. ``time`` is RFC 3339 UTC with exactly six
   fraction digits and ``Z`` (``2026-11-29T01:02:03.123456Z``). ``actor`` (a principal name or
   ``system``), ``action`` (``jwt.sign``, ``key.revoke``, ``authz.deny``…) and ``target`` are
   strings; ``outcome`` is ``success``, ``denied`` or ``failure``; ``details`` is an object.
2. ``hash`` is the lowercase hex SHA-256 of the canonical encoding (below) of the object made of
   the other eight members.
3. ``prev`` is the ``hash`` of record ``seq - 1``; record 1 has ``prev`` = GENESIS, 64 zeros.

Canonical encoding: UTF-8 JSON with no whitespace, the members of every object sorted by key
(code point order), strings with ``"`` and ``\\`` escaped as ``\\"`` and ``\\\\``, U+0008, U+0009,
U+000A, U+000C, U+000D as ``\\b \\t \\n \\f \\r``, the other characters below U+0020 as ``\\u00xx``
(lowercase hex), and every other character as itself; integers in plain decimal; ``true``,
``false``, ``null``. It is Python's ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode("utf-8")``, and also RFC 8785 (JCS) because values are restricted so
that the spelling is unique: no floats at all, integers within ±(2**53 - 1) (RFC 7493 §2.2),
strings that are Unicode text (no lone surrogates), and object keys within the Basic Multilingual
Plane (there, code point order is RFC 8785 §3.2.3's UTF-16 order). For example the record::

    {"seq":1,"time":"2026-11-29T01:02:03.123456Z","actor":"alice","action":"key.revoke",
     "target":"default/k1","outcome":"success","details":{"reason":"clé perdue","n":2},"prev":"0…0"}

is hashed as the bytes (shown wrapped, no newline in them)::

    {"action":"key.revoke","actor":"alice","details":{"n":2,"reason":"clé perdue"},
    "outcome":"success","prev":"0000000000000000000000000000000000000000000000000000000000000000",
    "seq":1,"target":"default/k1","time":"2026-11-29T01:02:03.123456Z"}

whose SHA-256 is ``5dae09d2cc1a765ddf05fe318e75266a2a5a6179424adc4c6afffa5c7347f67d``.

What the chain alone proves (:func:`signer.audit.chaincheck.verify_chain` names the first bad
record and why): a changed field, a record removed from the middle, records swapped or moved, and
a record inserted, even a forged one with a recomputed hash (the next record's ``prev`` or
``seq`` disowns it). What it does
not prove: removing the last N records leaves a shorter valid chain, and whoever can write the log
can append records or rewrite it from any point on with recomputed hashes. Signed checkpoints
(:mod:`signer.audit.checkpoint`) cover everything up to the head they sign; the tail after the last
checkpoint is only chained. An export that starts after record N verifies with ``start_seq=N+1``
and ``start_prev`` = the hash of record N, taken from a trusted source.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol, TypeAlias, TypedDict, cast

from jwks.b64 import b64url_encode

JSON: TypeAlias = "str | int | bool | Sequence[JSON] | Mapping[str, JSON] | None"

GENESIS: Final = "0" * 64
OUTCOMES: Final = frozenset({"success", "denied", "failure"})
CHECKPOINT_ACTION: Final = "audit.checkpoint"
CHECKPOINT_TYPE: Final = "signer-audit-checkpoint/v1"
# The record ``signer audit prune`` leaves: the cut (``through``, ``hash``) it anchored the
# stored log at, in the transaction that removed the records before it.
PRUNE_ACTION: Final = "audit.prune"
MAX_SAFE_INTEGER: Final = 2**53 - 1  # RFC 7493 §2.2: integers every JSON parser reads exactly
_MAX_DEPTH: Final = 32
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MEMBERS: Final = ("seq", "time", "actor", "action", "target", "outcome", "details", "prev", "hash")
_ENTRY_MEMBERS: Final = _MEMBERS[1:-2]  # what an AuditEntry holds
_KINDS: Final = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int: bool is an int in Python, not in JSON
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (Mapping, "an object"),
)
_WIRE_KINDS: Final = dict.fromkeys(_MEMBERS, "a string") | {
    "seq": "an integer",
    "details": "an object",
}


class AuditRecordJson(TypedDict):
    """One exported JSON Lines object."""

    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, JSON]
    prev: str
    hash: str


def format_time(unix_seconds: float) -> str:
    """Render Unix seconds as the audit time form, RFC 3339 UTC to the nearest microsecond."""
    if not math.isfinite(unix_seconds):
        raise ValueError(f"a time must be a finite number of seconds, not {unix_seconds!r}")
    # Rounded as datetime.fromtimestamp rounds (half to even on the fraction), so every record
    # made in one second shares that second's text, rendered once (the sign path's hot spot).
    fraction, whole = math.modf(unix_seconds)
    micros = round(fraction * 1e6)
    if micros >= MICROS_PER_SECOND:
        whole, micros = whole + 1, micros - MICROS_PER_SECOND
    elif micros < 0:
        whole, micros = whole - 1, micros + MICROS_PER_SECOND
    second, text = _LAST_SECOND[0]
    if whole != second:
        text = _second_text(whole)
        _LAST_SECOND[0] = (whole, text)
    return f"{text}.{micros:06d}Z"


MICROS_PER_SECOND = 1_000_000
# The last second rendered and its text; the pair is replaced whole, so threads may share it.
_LAST_SECOND: list[tuple[float, str]] = [(math.nan, "")]


def _second_text(whole: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole number of Unix seconds."""
    try:
        moment = datetime.fromtimestamp(whole, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{whole!r} seconds is outside the years 1 to 9999") from exc
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def canonical_json(value: object) -> bytes:
    """Return the canonical encoding (module docstring) of a JSON value; ValueError if not one."""
    return _encode(_copy(value, ("value",)))


def _encode(value: object) -> bytes:
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages and wire type checks."""
    found = next((name for type_, name in _KINDS if isinstance(value, type_)), None)
    return found or f"a {type(value).__name__}"


# Where a value sits, for error messages: the root's name, then keys and list indexes. Built as
# a tuple and spelled out only when something is refused (the hot path signs thousands a second).
Path = tuple[str | int, ...]


def _spell(where: str | Path) -> str:
    if isinstance(where, str):
        return where
    root, *parts = where
    return str(root) + "".join(f"[{part!r}]" for part in parts)


def _text(value: str, where: str | Path) -> str:
    if type(value) is str and value.isascii():  # the common case, checked in C
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        raise ValueError(
            f"{_spell(where)} holds a lone surrogate U+{code:04X}, which is not text"
        ) from exc
    return str.__str__(value)  # a plain str, whatever subclass (StrEnum) came in


def _copy(value: object, where: Path) -> JSON:
    """Check one JSON value against the canonical rules and return a private deep copy."""
    if isinstance(value, str):
        return _text(value, where)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if len(where) > _MAX_DEPTH:
        raise ValueError(f"{_spell(where)} nests deeper than {_MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        copied: dict[str, JSON] = {}
        for key, item in value.items():
            # RFC 8785 §3.2.3 sorts keys by UTF-16 units; within the BMP that is code point order.
            if not isinstance(key, str) or (not key.isascii() and max(key) > "\uffff"):
                raise ValueError(f"{_spell(where)} key {key!r} is not a string within the BMP")
            name = _text(key, where)
            # Inline the commonest members (ASCII strings, small ints): no path, no call.
            plain_text = type(item) is str and item.isascii()
            if plain_text or (type(item) is int and abs(item) <= MAX_SAFE_INTEGER):
                copied[name] = item
            else:
                copied[name] = _copy(item, (*where, key))
        return copied
    if isinstance(value, list | tuple):
        return [_copy(item, (*where, i)) for i, item in enumerate(value)]
    # Floats are refused: their spellings differ between JSON implementations (1e21, -0.0, NaN),
    # so one value could hash two ways. Audit details carry integers or strings instead.
    problem = f"{_kind(value)}, which the audit log does not take"
    if isinstance(value, int):
        problem = f"{value}, outside ±(2**53 - 1) (RFC 7493 §2.2)"
    raise ValueError(f"{_spell(where)} is {problem}")


def _copy_object(value: object, where: str) -> dict[str, JSON]:
    copied = _copy(value, (where,))
    if isinstance(copied, dict):
        return copied
    raise ValueError(f"{where} must be an object, not {_kind(value)}")


def _check_time(value: object, where: str) -> str:
    if not isinstance(value, str) or _TIME.fullmatch(value) is None:
        raise ValueError(
            f"{where} must be RFC 3339 UTC with six fraction digits"
            f" (2026-11-29T01:02:03.123456Z), not {value!r}"
        )
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError as exc:
        raise ValueError(f"{where} {value!r} is not a date and time of the calendar") from exc
    return value


def _check_text(value: object, where: str, *, empty: bool = False) -> str:
    if isinstance(value, str) and (value or empty):
        return _text(value, where)
    problem = "must not be empty" if value == "" else f"must be a string, not {_kind(value)}"
    raise ValueError(f"{where} {problem}")


def check_hex(value: object, where: str) -> str:
    """``value`` if it is 64 lowercase hex digits (a SHA-256); else ValueError naming ``where``."""
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        raise ValueError(f"{where} must be 64 lowercase hex digits, not {value!r}")
    return value


def _check_entry(fields: AuditEntry | AuditRecord) -> dict[str, JSON]:
    """Validate the caller-given members; return a private deep copy of the details."""
    _check_time(fields.time, "time")
    _check_text(fields.actor, "actor")
    _check_text(fields.action, "action")
    _check_text(fields.target, "target", empty=True)
    if fields.outcome not in OUTCOMES:
        raise ValueError(f"outcome must be success, denied or failure, not {fields.outcome!r}")
    return _copy_object(fields.details, "details")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """What a caller asks to record; :func:`link` makes it a record of the chain."""

    time: str  # format_time(now)
    actor: str  # a principal name, or "system"
    action: str  # "jwt.sign", "key.revoke", "authz.deny", …
    target: str  # what was acted on: a ring, a kid, a profile…
    outcome: str  # one of OUTCOMES
    details: Mapping[str, JSON] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # A private deep copy: a caller reusing its dict cannot change what gets hashed.
        object.__setattr__(self, "details", _check_entry(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One record of the chain. ``hash`` is derived from the rest, so a record is always whole."""

    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    details: Mapping[str, JSON] = field(hash=False)
    prev: str
    hash: str = field(init=False)
    # The canonical encoding of the eight members ``hash`` covers (what was hashed).
    content: bytes = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_link(self.seq, self.prev)
        object.__setattr__(self, "details", _check_entry(self))
        _seal(self)

    def to_json(self) -> AuditRecordJson:
        """The exported object: exactly the nine members, with a fresh copy of ``details``."""
        obj = {name: getattr(self, name) for name in _MEMBERS}
        return cast(AuditRecordJson, obj | {"details": _copy_object(self.details, "details")})

    def line(self) -> str:
        """The record as one JSON text with its nine members: what the stores keep, the sink
        appends and ``signer audit export`` writes.

        It is the hashed encoding (members sorted) with ``hash`` added last, so writing a record
        encodes nothing again. Readers take the members by name, in any order.
        """
        return self.content[:-1].decode("utf-8") + ',"hash":"' + self.hash + '"}'

    @classmethod
    def from_json(cls, obj: object) -> AuditRecord:
        """Parse an exported object strictly; ``ValueError`` names the first problem."""
        record, claimed = parse_record(obj)
        if claimed != record.hash:
            raise ValueError(f"hash {claimed} is not the content's, which is {record.hash}")
        return record


def _check_link(seq: object, prev: object) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SAFE_INTEGER:
        raise ValueError(f"seq must be an integer from 1 to 2**53 - 1, not {seq!r}")
    check_hex(prev, "prev")
    if (seq == 1) != (prev == GENESIS):
        raise ValueError(f"record seq {seq} has prev {prev}: GENESIS is for seq 1 only")


def _seal(record: AuditRecord) -> None:
    """Set ``content`` and ``hash`` from the other members, which are checked already."""
    content = _encode({name: getattr(record, name) for name in _MEMBERS[:-1]})
    object.__setattr__(record, "content", content)
    object.__setattr__(record, "hash", hashlib.sha256(content).hexdigest())


def parse_record(obj: object) -> tuple[AuditRecord, str]:
    """The record an exported object describes (hash recomputed), and the hash it claims."""
    if isinstance(obj, Mapping) and set(obj) == set(_MEMBERS):
        for name, wanted in _WIRE_KINDS.items():
            if (found := _kind(obj[name])) != wanted:
                raise ValueError(f"member {name} must be {wanted}, not {found}")
        claimed = check_hex(obj["hash"], "hash")
        return AuditRecord(**{name: obj[name] for name in _MEMBERS[:-1]}), claimed
    if not isinstance(obj, Mapping):
        problem = f"a record is a JSON object, not {_kind(obj)}"
    elif missing := [name for name in _MEMBERS if name not in obj]:
        problem = f"the record has no member {', '.join(missing)}"
    else:
        unknown = sorted(repr(key) for key in obj if key not in _MEMBERS)
        problem = f"the record has unknown member {', '.join(unknown)}"
    raise ValueError(problem)


class ChainHead(Protocol):
    """What linking after a record needs of it (an ``AuditRecord`` is one)."""

    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> str: ...


def link(entry: AuditEntry, *, seq: int, prev: str) -> AuditRecord:
    """Make ``entry`` record ``seq`` of the chain, after the record whose hash is ``prev``.

    The entry's members were checked, and its details copied, when it was made; they are not
    checked again (the hot path links thousands of entries a second).
    """
    _check_link(seq, prev)
    record: AuditRecord = object.__new__(AuditRecord)
    for name in _ENTRY_MEMBERS:
        object.__setattr__(record, name, getattr(entry, name))
    object.__setattr__(record, "seq", seq)
    object.__setattr__(record, "prev", prev)
    _seal(record)
    return record


def link_all(entries: Iterable[AuditEntry], *, head: ChainHead | None) -> list[AuditRecord]:
    """Chain ``entries`` in order after ``head`` (``None``: they start the chain at seq 1)."""
    seq, prev = (1, GENESIS) if head is None else (head.seq + 1, head.hash)
    records: list[AuditRecord] = []
    for entry in entries:
        records.append(link(entry, seq=seq, prev=prev))
        seq, prev = seq + 1, records[-1].hash
    return records


class CheckpointPayload(TypedDict):
    """What a checkpoint signs (canonical JSON), see :mod:`signer.audit.checkpoint`."""

    type: str
    seq: int
    hash: str
    kid: str
    time: str


def checkpoint_payload(head: AuditRecord, *, kid: str, time: str) -> bytes:
    """The bytes an ES256 checkpoint over ``head`` signs, at ``time`` (the checkpoint's time)."""
    payload: CheckpointPayload = {
        "type": CHECKPOINT_TYPE,
        "seq": head.seq,
        "hash": head.hash,
        "kid": _check_text(kid, "kid"),
        "time": _check_time(time, "time"),
    }
    return _encode(payload)


def checkpoint_entry(head: AuditRecord, *, kid: str, time: str, signature: bytes) -> AuditEntry:
    """The entry that records a checkpoint over ``head``; ``signature`` is raw ES256 ``r || s``.

    Chain it like any entry: checkpoints are records, so one removed from the middle shows. Its
    ``time`` is the payload's, so a verifier rebuilds the payload from the record alone.
    """
    if len(signature) != 64:
        # RFC 7518 §3.4: an ES256 signature is R and S as 32 octets each.
        raise ValueError(f"an ES256 signature is 64 octets (r || s), not {len(signature)}")
    checkpoint_payload(head, kid=kid, time=time)  # the same checks as what was signed
    return AuditEntry(
        time=time,
        actor="system",
        action=CHECKPOINT_ACTION,
        target="audit",
        outcome="success",
        details={
            "seq": head.seq,
            "hash": head.hash,
            "kid": kid,
            "alg": "ES256",
            "signature": b64url_encode(signature),
        },
    )
