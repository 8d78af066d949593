"""``signer audit prune``: move the oldest records into an archive file and out of the store.

The store keeps every record until it is pruned: with Redis in memory, with SQLite on disk. A
prune is cut at a signed checkpoint, so that both halves stay verifiable on their own:

* the **archive** holds the records from where the store started (its anchor, or record 1)
  through the checkpoint record, whose signature covers every record up to the seq it names;
* the **store** keeps the records after that named seq, so it still holds the checkpoint,
  which vouches for the new anchor: the first kept record links to the hash it signs.

The checkpoint, and any record between it and the seq it names, is in both. Nothing is removed
unless the stored log verifies from its anchor with every checkpoint signature, the archive was
written, flushed to disk and verified again as read back, and record *through* is still stored
with the hash that was verified (``StateStore.prune_audit`` checks it in its transaction).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jwks.jwk import Jwk
from signer.audit.chain import (
    CHECKPOINT_ACTION,
    PRUNE_ACTION,
    AuditEntry,
    AuditRecord,
    format_time,
    parse_record,
)
from signer.audit.chaincheck import parse_line
from signer.audit.verify import checkpoint_keys, verify_stored
from signer.errors import ConfigError
from signer.store.base import AuditAnchor, StaleWrite, StateStore


@dataclass(frozen=True, slots=True, kw_only=True)
class PrunePlan:
    """Where to cut: ``archive`` holds the stored lines through the checkpoint at
    ``checkpoint_seq``; the store keeps what follows ``through``, whose hash is ``through_hash``."""

    archive: list[str]
    through: int
    through_hash: str
    checkpoint_seq: int


class PruneRefused(ConfigError):
    """The log cannot be pruned as asked; nothing was removed."""

    code = "prune_refused"
    title = "Prune refused"


def plan_prune(
    lines: Sequence[str],
    keys: Sequence[Jwk],
    *,
    anchor: AuditAnchor,
    through: int | None = None,
    signed_before: str | None = None,
) -> PrunePlan | None:
    """The latest cut the stored ``lines`` (starting after ``anchor``) allow, or None if no
    signed checkpoint covers a record after the anchor.

    ``through``: remove no record after this seq. ``signed_before``: use only checkpoints
    signed before this time (the audit log's UTC text form), so that every record removed is
    older than it. ``PruneRefused`` if the lines do not verify with ``keys``.
    """
    if not checkpoint_keys(keys):
        raise PruneRefused(
            "no ES256 audit key: without checkpoint signatures nothing vouches for a cut"
        )
    report = verify_stored(lines, keys, anchor=anchor)
    if not report.ok:
        raise PruneRefused(
            f"the stored log does not verify, so nothing is pruned: {report.summary}"
        )
    best: tuple[AuditRecord, int, str] | None = None
    for line in lines:
        record, _ = parse_record(parse_line(line))
        if record.action != CHECKPOINT_ACTION:
            continue
        named, named_hash = record.details["seq"], record.details["hash"]
        if not isinstance(named, int) or not isinstance(named_hash, str):
            continue  # cannot happen: verify_export checked every checkpoint's form
        if named <= anchor.seq or (through is not None and named > through):
            continue
        if signed_before is not None and record.time >= signed_before:
            continue
        if best is None or named > best[1]:
            best = (record, named, named_hash)
    if best is None:
        return None
    checkpoint, named, named_hash = best
    return PrunePlan(
        archive=list(lines[: checkpoint.seq - anchor.seq]),
        through=named,
        through_hash=named_hash,
        checkpoint_seq=checkpoint.seq,
    )


def write_archive(path: Path, lines: Sequence[str]) -> str:
    """Create ``path`` (never replacing a file) with ``lines`` as JSON Lines, flushed to disk
    with its directory entry, and read it back; return the file's SHA-256."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise PruneRefused(f"{path} already exists; refusing to replace it") from None
    try:
        view = memoryview(data)
        while view:  # one write() may take only part: at most 2 GiB, or what the disk has
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    digest = hashlib.sha256(data).hexdigest()
    # Read back, whole: a chain cut short still links, so compare every byte.
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise PruneRefused(f"{path} does not hold what was written; nothing was pruned")
    return digest


def read_lines(path: Path) -> list[str]:
    """A JSON Lines file's records: split at "\\n" only (a record may hold U+2028 and kin)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


async def prune(
    store: StateStore,
    keys: Sequence[Jwk],
    archive_path: Path,
    *,
    clock: Callable[[], float],
    through: int | None = None,
    signed_before: str | None = None,
) -> str:
    """Archive and prune the stored log as ``plan_prune`` decides; a sentence saying what was
    done (or that there was nothing to do)."""
    anchor, lines = await store.audit_export()
    plan = plan_prune(lines, keys, anchor=anchor, through=through, signed_before=signed_before)
    if plan is None:
        return f"nothing to prune: no signed checkpoint covers a record after seq {anchor.seq}"
    digest = write_archive(archive_path, plan.archive)
    entry = AuditEntry(
        time=format_time(clock()),
        actor="system",
        action=PRUNE_ACTION,
        target=f"audit/{plan.through}",
        outcome="success",
        details={
            "through": plan.through,
            "hash": plan.through_hash,
            "checkpoint": plan.checkpoint_seq,
            "archived": len(plan.archive),
            "archive_sha256": digest,
        },
    )
    try:
        await store.prune_audit(
            through=plan.through, expected_hash=plan.through_hash, audit=[entry]
        )
    except StaleWrite as exc:
        raise PruneRefused(
            f"{archive_path} was written, but nothing was pruned: {exc.detail}"
        ) from None
    first = anchor.seq + 1
    return (
        f"archived seq {first}..{plan.checkpoint_seq} to {archive_path} (sha256 {digest});"
        f" the store now starts after seq {plan.through} (hash {plan.through_hash}), which"
        f" checkpoint seq {plan.checkpoint_seq} signs; verify the next archive with"
        f" --after {plan.through} --prev {plan.through_hash}"
    )


__all__ = ["PrunePlan", "PruneRefused", "plan_prune", "prune", "read_lines", "write_archive"]
