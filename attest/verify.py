"""Offline verification of envelopes, bundles and simple-signing payloads over explicit keys.

Nothing here looks anything up: the caller passes the trusted keys (``{hint or keyid: key}``) and
what it expects (an artifact digest, a payload type), and gets back a small record of what was
verified, or a :class:`VerificationError` saying precisely what failed. Malformed input raises
:class:`AttestError` from the parsers before any of this runs.

A hint or keyid only selects a key (DSSE protocol: "MUST NOT be used for security decisions"):
trust comes from the key being in ``trusted_keys`` and the signature verifying under it. Each key
verifies in exactly one scheme (:mod:`attest.keys`).
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from attest.bundle import Bundle, HashAlgorithm, MessageSignature
from attest.dsse import Envelope
from attest.errors import AttestError, VerificationError
from attest.intoto import PAYLOAD_TYPE, Statement, loads_statement
from attest.keys import PublicKey, verify_digest_signature, verify_message_signature
from attest.simplesigning import SimpleSigning, loads_simple_signing

__all__ = [
    "VerifiedBundle",
    "VerifiedEnvelope",
    "verify_bundle",
    "verify_envelope",
    "verify_simple_signing",
]

_HASHES: dict[HashAlgorithm, hashes.HashAlgorithm] = {
    HashAlgorithm.SHA2_256: hashes.SHA256(),
    HashAlgorithm.SHA2_384: hashes.SHA384(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedEnvelope:
    """A DSSE envelope that met its threshold: the payload and the keys that signed it."""

    payload_type: str
    payload: bytes
    keyids: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedBundle:
    """A verified bundle: the hint of the key that signed it and what it signed.

    ``message_digest`` is set for a message signature, ``statement`` for a DSSE bundle.
    """

    hint: str
    message_digest: bytes | None
    statement: Statement | None


def verify_envelope(
    envelope: Envelope,
    *,
    trusted_keys: Mapping[str, PublicKey],
    payload_types: Collection[str] = (PAYLOAD_TYPE,),
    threshold: int = 1,
) -> VerifiedEnvelope:
    """Verify a DSSE envelope: at least ``threshold`` distinct trusted keys signed its PAE.

    DSSE protocol, "Multi-signature Verification": a signature with a ``keyid`` is tried with that
    trusted key only, one without with every trusted key; each key counts once. Then the
    payload type must be one of ``payload_types``.
    """
    if threshold < 1:
        raise AttestError(f"threshold must be at least 1, not {threshold}")
    message = envelope.pae()
    accepted: set[str] = set()
    problems: list[str] = []
    for index, signature in enumerate(envelope.signatures):
        if signature.keyid is None or signature.keyid == "":
            candidates = list(trusted_keys.items())
        elif signature.keyid in trusted_keys:
            candidates = [(signature.keyid, trusted_keys[signature.keyid])]
        else:
            problems.append(f"signature {index}: keyid {signature.keyid!r} is not a trusted key")
            continue
        matched = [
            keyid
            for keyid, key in candidates
            if keyid not in accepted and verify_message_signature(key, message, signature.sig)
        ]
        if matched:
            accepted.add(matched[0])
        else:
            problems.append(f"signature {index}: does not verify with {_named(candidates)}")
    if len(accepted) < threshold:
        detail = "; ".join(problems) or "no signatures"
        raise VerificationError(
            f"envelope: {len(accepted)} of the {threshold} required trusted keys signed it "
            f"({detail})"
        )
    if envelope.payload_type not in payload_types:
        # DSSE protocol, "To verify": "Reject if PAYLOAD_TYPE is not a supported type."
        raise VerificationError(
            f"envelope: payload type {envelope.payload_type!r} is not one of "
            f"{sorted(payload_types)}"
        )
    return VerifiedEnvelope(
        payload_type=envelope.payload_type, payload=envelope.payload, keyids=frozenset(accepted)
    )


def verify_bundle(
    bundle: Bundle,
    *,
    trusted_keys: Mapping[str, PublicKey],
    artifact_digest: bytes | None = None,
    predicate_types: Collection[str] | None = None,
) -> VerifiedBundle:
    """Verify a keyed bundle with the trusted key its hint names.

    Message signature: the bundle's digest must equal ``artifact_digest`` (when given; pass it,
    or the bundle only proves it is self-consistent), and the signature must verify over it.
    DSSE: the one signature must verify over the PAE, the payload type must be in-toto, the
    payload must be an in-toto Statement v1, and when ``artifact_digest`` (SHA-256) is given, a
    subject must have that digest. The envelope's own ``keyid`` is ignored; the hint decides.
    ``predicate_types``: the statement's predicate type must be one of them (a key that signs
    provenance may also sign other statements about the same artifact); a message signature,
    which has no statement, then fails.
    """
    key = trusted_keys.get(bundle.hint)
    if key is None:
        raise VerificationError(f"bundle: key hint {bundle.hint!r} is not a trusted key")
    content = bundle.content
    if isinstance(content, MessageSignature):
        if predicate_types is not None:
            raise VerificationError(
                f"bundle: a message signature carries no statement, so no predicate type of "
                f"{sorted(predicate_types)}"
            )
        return _verify_message(bundle.hint, key, content, artifact_digest)
    # Bundle guarantees exactly one signature; its keyid is an unauthenticated hint, so the
    # bundle's verification material alone picks the key.
    if not verify_message_signature(key, content.pae(), content.signatures[0].sig):
        raise VerificationError(
            f"bundle: the DSSE signature does not verify with key {bundle.hint!r}"
        )
    if content.payload_type != PAYLOAD_TYPE:
        raise VerificationError(
            f"bundle: payload type {content.payload_type!r} is not {PAYLOAD_TYPE!r}"
        )
    try:
        statement = loads_statement(content.payload)
    except AttestError as exc:
        raise VerificationError(f"bundle: signed payload is not a valid statement: {exc}") from exc
    if predicate_types is not None and statement.predicate_type not in predicate_types:
        raise VerificationError(
            f"bundle: predicate type {statement.predicate_type!r} is not one of "
            f"{sorted(predicate_types)}"
        )
    if artifact_digest is not None:
        if len(artifact_digest) != 32:
            raise AttestError(
                f"artifact_digest must be a 32-byte SHA-256, not {len(artifact_digest)}"
            )
        if artifact_digest.hex() not in statement.digests():
            raise VerificationError(
                f"bundle: no subject of the statement has sha256 {artifact_digest.hex()}"
            )
    return VerifiedBundle(hint=bundle.hint, message_digest=None, statement=statement)


def verify_simple_signing(
    payload: bytes,
    signature: bytes,
    *,
    public_key: PublicKey,
    expected_digest: str | None = None,
) -> SimpleSigning:
    """Verify ``signature`` over the exact ``payload`` bytes, then parse the payload.

    ``expected_digest`` is the image manifest digest (``"sha256:<hex>"``) the caller is about to
    trust; when given, the payload must name exactly it.
    """
    if not verify_message_signature(public_key, payload, signature):
        raise VerificationError("simple signing: the signature does not verify with the key")
    try:
        parsed = loads_simple_signing(payload)
    except AttestError as exc:
        raise VerificationError(f"simple signing: signed payload is not valid: {exc}") from exc
    if expected_digest is not None and not hmac.compare_digest(
        parsed.manifest_digest.encode(), expected_digest.encode()
    ):
        raise VerificationError(
            f"simple signing: payload names {parsed.manifest_digest}, not {expected_digest}"
        )
    return parsed


def _verify_message(
    hint: str, key: PublicKey, content: MessageSignature, artifact_digest: bytes | None
) -> VerifiedBundle:
    if artifact_digest is not None and not hmac.compare_digest(artifact_digest, content.digest):
        raise VerificationError(
            f"bundle: messageDigest {content.digest.hex()} is not the artifact's digest "
            f"{artifact_digest.hex()}"
        )
    algorithm = _HASHES[content.algorithm]
    if not verify_digest_signature(key, content.digest, algorithm, content.signature):
        raise VerificationError(f"bundle: the message signature does not verify with key {hint!r}")
    return VerifiedBundle(hint=hint, message_digest=content.digest, statement=None)


def _named(candidates: list[tuple[str, PublicKey]]) -> str:
    if not candidates:
        return "any key (none are trusted)"
    return ", ".join(repr(keyid) for keyid, _ in candidates)
