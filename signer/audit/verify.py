"""``signer audit verify``: the chain and its signed checkpoints, with one verdict line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from jwks.jwk import Jwk, public_key_from_jwk
from signer.audit.chain import CHECKPOINT_ACTION, GENESIS, PRUNE_ACTION, parse_record
from signer.audit.chaincheck import BadRecord, parse_line, verify_chain
from signer.audit.checkpoint import verify_checkpoints
from signer.store.base import AuditAnchor


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """Whether the log checks, and a sentence saying what was checked or what is wrong."""

    ok: bool
    summary: str


def _bad(bad: BadRecord) -> str:
    return f"FAIL: record seq {bad.seq} (line {bad.line}) is {bad.kind}: {bad.reason}"


def checkpoint_keys(keys: Sequence[Jwk]) -> dict[str, ec.EllipticCurvePublicKey]:
    """The keys of ``keys`` that can vouch for checkpoints (ES256: P-256 with a kid), by kid."""
    trusted: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in keys:
        key = public_key_from_jwk(jwk)
        if (
            isinstance(key, ec.EllipticCurvePublicKey)
            and key.curve.name == "secp256r1"
            and "kid" in jwk
        ):
            trusted[jwk["kid"]] = key
    return trusted


def verify_stored(
    lines: Sequence[str], keys: Sequence[Jwk], *, anchor: AuditAnchor
) -> VerifyReport:
    """The stored log, which starts after ``anchor``: ``verify_export`` from there and, once
    pruned, proof that the anchor is a cut ``signer audit prune`` made. That leaves in the store
    a checkpoint naming exactly the anchor and the ``audit.prune`` record that set it; records
    removed any other way (deleted, then an anchor written) leave neither.
    """
    report = verify_export(lines, keys, after=anchor.seq, prev=anchor.hash)
    if not report.ok or anchor.seq == 0:
        return report
    named, pruned = False, False
    for line in lines:
        record, _ = parse_record(parse_line(line))
        details = record.details
        at_anchor = details.get("hash") == anchor.hash
        if record.action == CHECKPOINT_ACTION and details.get("seq") == anchor.seq and at_anchor:
            named = True
        if record.action == PRUNE_ACTION and details.get("through") == anchor.seq and at_anchor:
            pruned = True
    if named and pruned:
        return report
    missing = "checkpoint naming it" if not named else "audit.prune record setting it"
    return VerifyReport(
        ok=False,
        summary=(
            f"FAIL: the stored log starts after seq {anchor.seq}, but no {missing} is stored:"
            " records before it were removed without signer audit prune."
        ),
    )


def verify_export(
    lines: Sequence[str], keys: Sequence[Jwk], *, after: int = 0, prev: str = GENESIS
) -> VerifyReport:
    """Verify JSON Lines ``lines``; with the audit keys, also every signed checkpoint.

    An export that starts after record ``after`` (``signer audit export --after``) links to
    that record's hash, ``prev``.
    """
    # Checkpoints are ES256 (P-256); other keys in the set cannot vouch for them.
    trusted = checkpoint_keys(keys)
    if not trusted:
        chain = verify_chain(lines, start_seq=after + 1, start_prev=prev)
        if chain.first_bad is not None:
            return VerifyReport(ok=False, summary=_bad(chain.first_bad))
        head = chain.head
        return VerifyReport(
            ok=True,
            summary=f"OK: {chain.count} records chain correctly"
            + (f" up to seq {head.seq} (hash {head.hash})" if head else "")
            + "; no checkpoint key given, signatures not checked",
        )
    report = verify_checkpoints(lines, trusted, start_seq=after + 1, start_prev=prev)
    if report.first_bad is not None:
        return VerifyReport(ok=False, summary=_bad(report.first_bad))
    last = report.last_signed_seq
    signed = (
        f"{report.checked} signed checkpoints verify, covering seq {after + 1}..{last}"
        if last is not None and last > after
        else f"{report.checked} signed checkpoints verify, vouching for seq {last}"
        if last is not None
        else "no signed checkpoint yet"
    )
    return VerifyReport(ok=True, summary=f"OK: {report.count} records chain correctly; {signed}")
