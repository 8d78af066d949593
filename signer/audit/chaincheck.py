"""Checking a chain: read records in order and name the first bad one, and why.

The record format, the canonical encoding and what a chain can and cannot prove are described in
:mod:`signer.audit.chain`; signed checkpoints (:mod:`signer.audit.checkpoint`) walk the chain with
:func:`walk_chain` too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from signer.audit.chain import GENESIS, AuditRecord, check_hex, parse_record

# What a verification found at the first bad record:
#   malformed      it cannot be read: not JSON, other members or types, values out of form
#   changed        its hash does not match its content
#   removed        seq jumps forward, and the skipped seqs appear nowhere after it
#   reordered      seq jumps forward, and a skipped seq comes later
#   inserted       it does not belong though its own hash holds: a copy, seq going back, or a
#                  prev link its neighbours contradict
#   bad-signature  a checkpoint's signature does not verify (signer.audit.checkpoint)
#   mismatch       a checkpoint signs another hash than the record at its seq has
Fault = Literal[
    "malformed", "changed", "removed", "reordered", "inserted", "bad-signature", "mismatch"
]
ChainInput: TypeAlias = "AuditRecord | Mapping[str, object] | str | bytes"


def parse_line(line: str | bytes) -> object:
    """Parse one JSON Lines line strictly: UTF-8, one JSON value, no duplicate member names."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"the line is not UTF-8 (byte {exc.start})") from exc
    if not line.strip():
        raise ValueError("the line is empty")
    try:
        # RFC 8259 §4: duplicate names make a reader's view implementation-defined; a tamperer
        # could show a different actor to a SIEM than the one hashed here.
        return json.loads(line, object_pairs_hook=_unique)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the line is not JSON: {exc.msg} at column {exc.colno}") from exc


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"member {key!r} appears twice")
        obj[key] = value
    return obj


@dataclass(frozen=True, slots=True, kw_only=True)
class BadRecord:
    """The first record a verification rejects, and why."""

    seq: int  # as found; from the position if it could not be read
    line: int  # 1-based position in the input
    kind: Fault
    reason: str  # one sentence for a human


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """The outcome of :func:`verify_chain`; ``count`` and ``head`` cover the records that check."""

    ok: bool
    count: int
    head: AuditRecord | None
    first_bad: BadRecord | None


def verify_chain(
    records: Iterable[ChainInput], *, start_seq: int = 1, start_prev: str = GENESIS
) -> ChainReport:
    """Check a log in order (records, parsed objects or raw lines) and name its first bad record.

    ``start_seq``/``start_prev`` verify an export that begins after record ``start_seq - 1``, whose
    hash is ``start_prev``. An empty log verifies, and so does a log cut short at its end.
    """
    count, head, bad = 0, None, None
    for item in walk_chain(records, start_seq=start_seq, start_prev=start_prev):
        if isinstance(item, BadRecord):
            bad = item
        else:
            count, head = count + 1, item[1]
    return ChainReport(ok=bad is None, count=count, head=head, first_bad=bad)


Checked: TypeAlias = tuple[int, AuditRecord]  # (line, record)


def walk_chain(
    records: Iterable[ChainInput], *, start_seq: int = 1, start_prev: str = GENESIS
) -> Iterator[Checked | BadRecord]:
    """Yield ``(line, record)`` for each record that checks, in order, then a ``BadRecord`` if any.

    A record is yielded once the next one links to it (or the input ends). When two records
    contradict each other, the one the record after them disowns is reported; if nothing tells,
    the earlier one, so that nothing in the input contradicts what was yielded.
    """
    if isinstance(start_seq, bool) or not isinstance(start_seq, int) or start_seq < 1:
        raise ValueError(f"start_seq must be an integer from 1, not {start_seq!r}")
    if (start_seq == 1) != (check_hex(start_prev, "start_prev") == GENESIS):
        raise ValueError("start_prev is GENESIS for start_seq 1, else the hash of start_seq - 1")
    items = iter(records)
    expected, last = start_seq, start_prev
    pending: Checked | None = None
    for line, item in enumerate(items, start=1):
        try:
            record, claimed = _read(item)
        except ValueError as exc:
            yield from _settled(pending)
            seq = _seq_of(item)
            seq = expected if seq is None else seq
            yield BadRecord(seq=seq, line=line, kind="malformed", reason=f"line {line}: {exc}.")
            return
        seq, at = record.seq, f"record seq {record.seq} at line {line}"
        if claimed != record.hash:
            yield from _settled(pending)
            reason = f"{at} was changed: its content hashes to {record.hash}, not {claimed}."
            yield BadRecord(seq=seq, line=line, kind="changed", reason=reason)
            return
        if seq == expected and record.prev == last:
            yield from _settled(pending)
            pending, expected, last = (line, record), seq + 1, record.hash
            continue
        if seq > expected:
            yield from _settled(pending)
            yield _gap(line, record, expected, items)
        elif pending is not None and (seq == expected or seq == pending[1].seq):
            yield from _contested((line, record), pending, items)
        elif seq == expected:
            reason = f"{at} does not follow the start: its prev is {record.prev}, not {last}."
            yield BadRecord(seq=seq, line=line, kind="inserted", reason=reason)
        else:
            yield from _settled(pending)
            reason = f"{at} goes back where seq {expected} was expected: it was inserted."
            yield BadRecord(seq=seq, line=line, kind="inserted", reason=reason)
        return
    yield from _settled(pending)


def _settled(pending: Checked | None) -> Iterator[Checked]:
    if pending is not None:
        yield pending


def _read(item: ChainInput) -> tuple[AuditRecord, str]:
    if isinstance(item, AuditRecord):
        return item, item.hash
    return parse_record(parse_line(item) if isinstance(item, str | bytes) else item)


def _seq_of(item: ChainInput) -> int | None:
    """The seq an input claims, if it can be read at all (to locate and classify)."""
    if isinstance(item, AuditRecord):
        return item.seq
    try:
        obj = parse_line(item) if isinstance(item, str | bytes) else item
    except ValueError:
        return None
    seq = obj.get("seq") if isinstance(obj, Mapping) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _witness(items: Iterator[ChainInput]) -> AuditRecord | None:
    """The next record, if it reads and its hash holds: it tells which record it follows."""
    for item in items:
        try:
            record, claimed = _read(item)
        except ValueError:
            return None
        return record if claimed == record.hash else None
    return None


def _gap(line: int, record: AuditRecord, expected: int, items: Iterator[ChainInput]) -> BadRecord:
    """Seq jumps forward: records were removed, or come later (moved), or this one is extra."""
    seq, later, again = record.seq, None, False
    for offset, item in enumerate(items, start=line + 1):
        found = _seq_of(item)
        if found is not None and expected <= found < seq and later is None:
            later = (found, offset)
        again = again or found == seq
    at = f"record seq {seq} at line {line}"
    if again:
        reason = f"{at} comes where seq {expected} was expected and again later: it was inserted."
        return BadRecord(seq=seq, line=line, kind="inserted", reason=reason)
    if later is not None:
        reason = f"{at} is out of order: seq {later[0]}, due before it, is at line {later[1]}."
        return BadRecord(seq=seq, line=line, kind="reordered", reason=reason)
    missing = f"seq {expected} was" if seq == expected + 1 else f"seqs {expected}-{seq - 1} were"
    reason = f"{missing} removed: {at} comes where seq {expected} was expected."
    return BadRecord(seq=seq, line=line, kind="removed", reason=reason)


def _contested(
    current: Checked, pending: Checked, items: Iterator[ChainInput]
) -> Iterator[Checked | BadRecord]:
    """Two records in a row that cannot both be genuine: this one names another ``prev`` than the
    one before it, or both claim the same seq. The next record, if it reads, says which it follows.
    """
    (line, record), (before_line, before) = current, pending
    if record.hash == before.hash:
        yield pending
        reason = f"line {line} is a second copy of record seq {record.seq} (line {before_line})."
        yield BadRecord(seq=record.seq, line=line, kind="inserted", reason=reason)
        return
    if record.seq == before.seq:
        conflict = f"lines {before_line} and {line} both claim seq {record.seq}"
    else:
        conflict = (
            f"record seq {record.seq} at line {line} names prev {record.prev}, not {before.hash}"
        )
    witness = _witness(items)
    if witness is not None and witness.prev == before.hash:
        yield pending
        reason = (
            f"{conflict}; line {line + 1} follows line {before_line}, so line {line} was inserted."
        )
        yield BadRecord(seq=record.seq, line=line, kind="inserted", reason=reason)
        return
    if witness is not None and witness.prev == record.hash:
        reason = (
            f"{conflict}; line {line + 1} follows line {line}, so line {before_line} is forged."
        )
    else:
        reason = f"{conflict}: one of the two is forged (a signed checkpoint tells which)."
    yield BadRecord(seq=before.seq, line=before_line, kind="inserted", reason=reason)
