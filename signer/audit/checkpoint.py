"""Signed checkpoints: what lets a verifier holding only a public key trust the audit chain.

A chain proves its own integrity, not its author: whoever can write the log can rewrite it from any
record on with recomputed hashes, append to it or cut its tail. A checkpoint is the signer's
signature over the head of the chain at one moment (:func:`signer.audit.chain.checkpoint_payload`
and :func:`~signer.audit.chain.checkpoint_entry` make one):

- the signed payload is the canonical JSON (:mod:`signer.audit.chain`) of
  ``{"type": "signer-audit-checkpoint/v1", "seq": N, "hash": <hash of record N>, "kid": <key id>,
  "time": <the checkpoint's time>}``;
- the signature is ES256 (RFC 7518 §3.4): ECDSA on P-256 over SHA-256 of the payload bytes, as
  raw ``r || s`` (64 octets), written base64url without padding (RFC 7515 §2);
- the checkpoint is appended as an ordinary record: action ``audit.checkpoint``, actor ``system``,
  target ``audit``, outcome ``success``, ``time`` = the payload's time, details ``{"seq", "hash",
  "kid", "alg": "ES256", "signature"}``. So it is chained too: removing one from the middle shows.

:func:`verify_checkpoints` walks the chain as :func:`~signer.audit.chaincheck.verify_chain`
does and, for each checkpoint, rebuilds the payload from the record, verifies the signature under
the trusted key for its ``kid`` and checks that record N of the input hashes to the named hash.
Then every record from the start of the input to N (``last_signed_seq``) is as the key holder
wrote it: changing any of them changes hash N, or breaks the chain, or the signature.

Not covered: records after the last checkpoint's N are only chained, so whoever can write the log
can change, append or drop them. The service does not sign its next checkpoint over such a change
to any record up to the last one it committed itself: before signing it reads that record back
and compares its hash with the one it wrote (``AuditWriter``), and if they differ it logs an error
and signs nothing more, so the change shows as checkpoints that stop. Cutting the log back to
before a checkpoint shows only against a checkpoint known from elsewhere (the service's latest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from jwks.b64 import b64url_decode
from jwks.jws import raw_to_der_ecdsa
from signer.audit.chain import (
    CHECKPOINT_ACTION,
    CHECKPOINT_TYPE,
    GENESIS,
    AuditRecord,
    CheckpointPayload,
    canonical_json,
)
from signer.audit.chaincheck import BadRecord, ChainInput, walk_chain

TrustedKeys: TypeAlias = "ec.EllipticCurvePublicKey | Mapping[str, ec.EllipticCurvePublicKey]"
_DETAILS: Final = frozenset({"seq", "hash", "kid", "alg", "signature"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointReport:
    """The outcome of :func:`verify_checkpoints`."""

    ok: bool
    count: int  # records that checked before first_bad (all of them if ok)
    checked: int  # checkpoints whose signature verified and whose head matched the input
    last_signed_seq: int | None  # the highest seq a valid checkpoint covers; None if none does
    first_bad: BadRecord | None  # the first chain fault or bad checkpoint


def verify_checkpoints(
    records: Iterable[ChainInput],
    public_key: TrustedKeys,
    *,
    start_seq: int = 1,
    start_prev: str = GENESIS,
) -> CheckpointReport:
    """Check the chain and every checkpoint in it against ``public_key`` (or keys by ``kid``).

    A checkpoint naming a record before the input (an export from ``start_seq``) cannot vouch
    for it: its signature is still checked, but it does not count, unless it names exactly
    ``start_seq - 1`` and ``start_prev``. A log without checkpoints is ``ok`` with ``checked``
    0: what to require is the caller's policy.
    """
    _check_keys(public_key)
    digests = bytearray()  # SHA-256 of every record from start_seq on, 32 octets each
    count, checked, signed, bad = 0, 0, None, None
    for item in walk_chain(records, start_seq=start_seq, start_prev=start_prev):
        if isinstance(item, BadRecord):
            bad = item
            break
        line, record = item
        digests += bytes.fromhex(record.hash)
        if record.action == CHECKPOINT_ACTION:
            covered = _check(
                line,
                record,
                keys=public_key,
                digests=digests,
                start_seq=start_seq,
                start_prev=start_prev,
            )
            if isinstance(covered, BadRecord):
                bad = covered
                break
            if covered is not None:
                checked, signed = checked + 1, max(signed or 0, covered)
        count += 1
    return CheckpointReport(
        ok=bad is None, count=count, checked=checked, last_signed_seq=signed, first_bad=bad
    )


def _check_keys(keys: TrustedKeys) -> None:
    for key in keys.values() if isinstance(keys, Mapping) else (keys,):
        if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
            raise ValueError("checkpoints are ES256: trusted keys must be EC public keys on P-256")


def _check(
    line: int,
    record: AuditRecord,
    *,
    keys: TrustedKeys,
    digests: bytearray,
    start_seq: int,
    start_prev: str,
) -> BadRecord | int | None:
    """A checkpoint's fault, or the seq it covers (None: it names a record before the input)."""
    at = f"checkpoint seq {record.seq} at line {line}"
    try:
        seq, named, kid, signature = _read(record)
    except ValueError as exc:
        return BadRecord(seq=record.seq, line=line, kind="malformed", reason=f"{at}: {exc}.")
    key = keys.get(kid) if isinstance(keys, Mapping) else keys
    payload: CheckpointPayload = {
        "type": CHECKPOINT_TYPE,
        "seq": seq,
        "hash": named,
        "kid": kid,
        "time": record.time,
    }
    if key is None or not _verifies(key, signature, canonical_json(payload)):
        trusted = "" if key is not None else ", which is not a trusted key"
        reason = f"{at}: its signature does not verify under kid {kid!r}{trusted}."
        return BadRecord(seq=record.seq, line=line, kind="bad-signature", reason=reason)
    if seq < start_seq - 1:
        return None
    index = (seq - start_seq) * 32
    actual = start_prev if seq == start_seq - 1 else digests[index : index + 32].hex()
    if actual != named:
        reason = (
            f"{at} signs hash {named} for seq {seq}, but that record hashes to {actual}:"
            f" records up to seq {seq} are not the ones the key holder signed."
        )
        return BadRecord(seq=record.seq, line=line, kind="mismatch", reason=reason)
    return seq


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        # RFC 7518 §3.4: JOSE carries r || s; cryptography verifies the DER ECDSA-Sig-Value.
        key.verify(raw_to_der_ecdsa(signature), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _read(record: AuditRecord) -> tuple[int, str, str, bytes]:
    """A checkpoint record's named seq, named hash, kid and raw signature; ValueError if odd."""
    details = record.details
    if set(details) != _DETAILS:
        raise ValueError("its details must have exactly alg, hash, kid, seq and signature")
    seq, named, kid, alg, encoded = (
        details[name] for name in ("seq", "hash", "kid", "alg", "signature")
    )
    if alg != "ES256":
        raise ValueError(f"its alg must be ES256, not {alg!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < record.seq:
        raise ValueError(f"it must name a seq from 1 to {record.seq - 1}, not {seq!r}")
    if not isinstance(named, str) or _HEX64.fullmatch(named) is None:
        raise ValueError(f"it must name a hash of 64 lowercase hex digits, not {named!r}")
    if not isinstance(kid, str) or not kid:
        raise ValueError(f"its kid must be a non-empty string, not {kid!r}")
    signature = b64url_decode(encoded) if isinstance(encoded, str) else b""
    if len(signature) != 64:
        raise ValueError("its signature must be base64url of 64 octets (ES256 r || s)")
    return seq, named, kid, signature
