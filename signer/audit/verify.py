"""``signer audit verify``: the chain and its signed checkpoints, with one verdict line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from jwks.jwk import Jwk, public_key_from_jwk
from signer.audit.chain import GENESIS
from signer.audit.chaincheck import BadRecord, verify_chain
from signer.audit.checkpoint import verify_checkpoints


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """Whether the log checks, and a sentence saying what was checked or what is wrong."""

    ok: bool
    summary: str


def _bad(bad: BadRecord) -> str:
    return f"FAIL: record seq {bad.seq} (line {bad.line}) is {bad.kind}: {bad.reason}"


def verify_export(
    lines: Sequence[str], keys: Sequence[Jwk], *, after: int = 0, prev: str = GENESIS
) -> VerifyReport:
    """Verify JSON Lines ``lines``; with the audit keys, also every signed checkpoint.

    An export that starts after record ``after`` (``signer audit export --after``) links to
    that record's hash, ``prev``.
    """
    trusted: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in keys:
        key = public_key_from_jwk(jwk)
        # Checkpoints are ES256 (P-256); other keys in the set cannot vouch for them.
        if (
            isinstance(key, ec.EllipticCurvePublicKey)
            and key.curve.name == "secp256r1"
            and "kid" in jwk
        ):
            trusted[jwk["kid"]] = key
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
