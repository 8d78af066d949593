"""The signing service: wires the pure JOSE core to the HSM and the state store.

It owns the ring views, brings each ring up at start (generating a first key on the token when a
ring has none, proving every key it will use), and signs JWTs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jwks.algorithms import Alg
from jwks.jwk import Jwk, public_jwk
from jwks.jws import compact, encode_claims, signing_input
from jwks.records import KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId, thumbprint
from signer.audit.writer import AuditWriter
from signer.errors import ArtifactRing, KeyNotActive, KeyProofFailed, UnknownRing
from signer.hsm.base import KeyBackend, KeyRef
from signer.rings import RingView, SigningKey, ref_of
from signer.settings import RingPolicy, Settings
from signer.store.base import StateStore
from signer.tokens import JwtRequest

log = logging.getLogger("signer.service")

Clock = Callable[[], float]

SIGN_ATTEMPTS = 3
AUDIT_KID = "audit_kid"
AUDIT_RING = "_audit"  # not a configurable ring name (names start with a letter or digit)
# The audit key never rotates by schedule; only its algorithm and label prefix matter here.
AUDIT_POLICY = RingPolicy(
    name=AUDIT_RING,
    alg=Alg.ES256,
    rotation_period=2,
    prepublish=1,
    token_max_ttl=1,
    jwks_max_age=1,
    clock_skew=0,
    retain=1,
)
VIEW_CHANGE_WAIT_S = 2.0  # a lifecycle write refreshes the view right after it commits


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedJwt:
    """A signed token and the facts about it a caller (and the audit log) needs."""

    jwt: str
    kid: KeyId
    alg: str
    exp: int
    jti: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def key_label(ring: str, key_id: str) -> str:
    """CKA_LABEL of a ring's key: ``signer/<ring>/<key_id>``."""
    return f"signer/{ring}/{key_id}"


class WatermarkGate:
    """Persists each key's latest signed ``exp`` before any token with that ``exp`` leaves.

    Tokens issued in the same second share one write: a writer holds the key's lock and the
    others find the watermark already high enough (DESIGN.md: drain from facts, not guesses).
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._persisted: dict[KeyId, int] = {}
        self._locks: dict[KeyId, asyncio.Lock] = {}

    def seed(self, record: KeyRecord) -> None:
        """Start from the watermark already in the store."""
        if record.exp_watermark is not None:
            self._persisted[record.kid] = record.exp_watermark

    async def ensure(self, kid: KeyId, exp: int) -> None:
        """Return once the store's watermark for ``kid`` is at least ``exp``."""
        if self._persisted.get(kid, 0) >= exp:
            return
        lock = self._locks.setdefault(kid, asyncio.Lock())
        async with lock:
            if self._persisted.get(kid, 0) >= exp:
                return
            self._persisted[kid] = await self._store.raise_watermark(kid, exp)


class SignerService:
    """Rings, keys and JWT signing over a ``KeyBackend`` and a ``StateStore``."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend: KeyBackend,
        store: StateStore,
        clock: Clock,
        audit: AuditWriter,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.clock = clock
        self.audit = audit
        self._policies: dict[str, RingPolicy] = {r.name: r for r in settings.rings}
        # config_checks._check_artifact_rings: these rings' keys never sign a JWT.
        self._artifact_rings = settings.artifact_rings
        self._views: dict[str, RingView] = {}
        self._watermarks = WatermarkGate(store)
        self._revoked: set[KeyId] = set()
        self._changed: dict[str, asyncio.Event] = {}

    @property
    def views(self) -> Mapping[str, RingView]:
        """The current view of every ring."""
        return self._views

    def view(self, ring: str) -> RingView:
        """The view of ``ring``; ``UnknownRing`` if it is not configured."""
        try:
            return self._views[ring]
        except KeyError:
            raise UnknownRing(f"no ring named {ring!r}") from None

    def refresh(self, ring: str, records: Sequence[KeyRecord]) -> RingView:
        """Rebuild ``ring``'s view from its records (after every lifecycle write).

        Unchanged records keep the current view: followers and idle ticks re-read the store
        often, and neither the JWKS bytes nor the cached headers need rebuilding then.
        """
        current = self._views.get(ring)
        if current is not None and current.records == tuple(records):
            return current
        view = RingView.build(self._policies[ring], records)
        for record in records:
            if record.state is KeyState.ACTIVE:
                self._watermarks.seed(record)
            elif record.state is KeyState.REVOKED:
                self._revoked.add(record.kid)
        self._views[ring] = view
        changed = self._changed.pop(ring, None)
        if changed is not None:
            changed.set()
        return view

    async def prove_record(self, record: KeyRecord) -> None:
        """Refuse a recorded key that fails its custody proof or is not the key of its kid."""
        await self._prove(ref_of(record), kid=record.kid)

    async def generate_key(self, policy: RingPolicy, *, active: bool) -> KeyRecord:
        """Generate and prove a key on the token and describe it; the caller persists it.

        An ``active`` key signs at once (a new ring's first key, or an emergency with no
        standby left); every other key starts ``pending`` and is published first.
        """
        key_id = secrets.token_hex(16)
        ref = await self.backend.generate(policy.alg, key_id, key_label(policy.name, key_id))
        members = await self._prove(ref)
        now = int(self.clock())
        return KeyRecord(
            kid=KeyId(thumbprint(members)),
            ring=RingName(policy.name),
            alg=policy.alg,
            key_id=key_id,
            label=ref.label,
            jwk=dict(members),  # type: ignore[arg-type]
            state=KeyState.ACTIVE if active else KeyState.PENDING,
            created_at=now,
            published_at=now,
            activated_at=now if active else None,
            emergency=active,
        )

    async def _prove(self, ref: KeyRef, *, kid: KeyId | None = None) -> Jwk:
        """Refuse a key that is not provably non-exportable or whose public half is not ``kid``.

        Returns the key's public JWK members.
        """
        proof = await self.backend.attributes(ref)
        if not proof.ok:
            raise KeyProofFailed(
                f"key {ref.label} fails its custody proof: {', '.join(proof.failures())}"
            )
        members = public_jwk(ref.alg, await self.backend.public_key(ref))
        if kid is not None and thumbprint(members) != kid:
            raise KeyProofFailed(f"key {ref.label} on the token does not match kid {kid}")
        return members

    async def sign_jwt(self, ring: str, request: JwtRequest, *, actor: str) -> SignedJwt:
        """Sign ``request``'s claims with the ring's active key (see ``sign_jwts``)."""
        (signed,) = await self.sign_jwts(ring, [request], actor=actor)
        return signed

    async def sign_jwts(
        self, ring: str, requests: Sequence[JwtRequest], *, actor: str
    ) -> list[SignedJwt]:
        """Sign each request's claims with the ring's active key, all with the same key.

        A rotation or revocation can land while a request is in flight, in this process or
        another (whose change this one's view may not show yet). The store refuses to raise
        the watermark of a key that is no longer active, and the audit records commit only
        while the signing key is active, in the commit's own transaction; either way the
        requests wait for the new view and sign again. A token leaves only after its record
        commits, so no token returned after a revocation carries the revoked kid.
        """
        if ring in self._artifact_rings:
            raise ArtifactRing(f"ring {ring!r} signs artifacts, not JWTs")
        for _ in range(SIGN_ATTEMPTS):
            view = self.view(ring)
            key = view.signing
            if key is None or key.record.kid in self._revoked:
                await self._view_change(ring, view)
                continue
            try:
                signed = await self._sign_with(key, view.policy, requests)
                await self._audit_signatures(ring, actor, signed, requests)
            except KeyNotActive:
                await self._view_change(ring, view)
                continue
            return signed
        raise KeyNotActive(f"ring {ring!r} has no key that may sign right now")

    async def _audit_signatures(
        self, ring: str, actor: str, signed: Sequence[SignedJwt], requests: Sequence[JwtRequest]
    ) -> None:
        """Durably record each signature before its token may leave (DESIGN.md: Audit)."""
        items: list[dict[str, Any]] = []
        for token, request in zip(signed, requests, strict=True):
            details: dict[str, Any] = {
                "ring": ring,
                "kid": token.kid,
                "alg": token.alg,
                "exp": token.exp,
                "jti_sha256": _digest(token.jti),
            }
            sub = request.claims.get("sub")
            if isinstance(sub, str):
                details["sub_sha256"] = _digest(sub)
            target = f"ring/{ring}/{token.kid}"
            items.append(
                {"actor": actor, "action": "jwt.sign", "target": target, "details": details}
            )
        await self.audit.record_many(items, active=signed[0].kid)

    async def audit_key(self, *, create: bool) -> KeyRecord | None:
        """The HSM key that signs audit checkpoints; generated (and audited) if ``create``."""
        kid = await self.store.get_meta(AUDIT_KID)
        record = None if kid is None else await self.store.get_key(KeyId(kid))
        if record is None:
            # The pointer is written after the key's record: a crash in between leaves the
            # record (the audit ring's one active key) without it. Adopt it, or every later
            # start would fail to insert a second active key in the ring.
            active = [r for r in await self.store.keys(AUDIT_RING) if r.state is KeyState.ACTIVE]
            if active:
                record = active[0]
                await self.store.set_meta(AUDIT_KID, record.kid)
        if record is not None:
            await self.prove_record(record)
            return record
        if not create:
            return None
        record = await self.generate_key(AUDIT_POLICY, active=True)
        generated = self.audit.make(
            actor="system",
            action="key.generate",
            target=f"ring/{AUDIT_RING}/{record.kid}",
            details={
                "ring": AUDIT_RING,
                "kid": record.kid,
                "alg": record.alg.value,
                "label": record.label,
                "purpose": "audit checkpoints",
            },
        )
        await self.store.insert_key(record, audit=[generated])
        await self.store.set_meta(AUDIT_KID, record.kid)
        return record

    async def _view_change(self, ring: str, seen: RingView) -> None:
        """Wait (briefly) until ``ring``'s view is newer than ``seen``."""
        if self._views.get(ring) is not seen:
            return
        changed = self._changed.setdefault(ring, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), VIEW_CHANGE_WAIT_S)

    async def _sign_with(
        self, key: SigningKey, policy: RingPolicy, requests: Sequence[JwtRequest]
    ) -> list[SignedJwt]:
        now = int(self.clock())
        claims = [r.claims_at(now, token_max_ttl=policy.token_max_ttl) for r in requests]
        # Encoded before anything is written: a claim set that cannot be encoded raises
        # here and leaves the watermark as it was.
        inputs = [
            signing_input(key.header(r.typ), encode_claims(c))
            for r, c in zip(requests, claims, strict=True)
        ]
        # One watermark write covers them all: it only has to reach the latest exp.
        await self._watermarks.ensure(key.record.kid, max(c["exp"] for c in claims))
        signatures = await self.backend.sign_many(key.ref, inputs)
        kid, alg = key.record.kid, key.record.alg.value
        return [
            SignedJwt(jwt=compact(data, signature), kid=kid, alg=alg, exp=c["exp"], jti=c["jti"])
            for data, signature, c in zip(inputs, signatures, claims, strict=True)
        ]
