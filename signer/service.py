"""The signing service: wires the pure JOSE core to the HSM and the state store.

It owns the ring views, brings each ring up at start (generating a first key on the token when a
ring has none, proving every key it will use), and signs JWTs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jwks.jwk import Jwk, public_jwk
from jwks.jws import compact, encode_claims, signing_input
from jwks.records import PUBLISHED_STATES, KeyRecord, KeyState, RingName
from jwks.thumbprint import KeyId, thumbprint
from signer.errors import KeyNotActive, KeyProofFailed, UnknownRing
from signer.hsm.base import KeyBackend, KeyRef
from signer.rings import RingView, ref_of
from signer.settings import RingPolicy, Settings
from signer.store.base import StateStore
from signer.tokens import JwtRequest

log = logging.getLogger("signer.service")

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedJwt:
    """A signed token and the facts about it a caller (and the audit log) needs."""

    jwt: str
    kid: KeyId
    alg: str
    exp: int
    jti: str


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
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.clock = clock
        self._policies: dict[str, RingPolicy] = {r.name: r for r in settings.rings}
        self._views: dict[str, RingView] = {}
        self._watermarks = WatermarkGate(store)

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

    async def start(self) -> None:
        """Bring every configured ring up: a proven active key and a JWKS for each."""
        for policy in self.settings.rings:
            records = await self.store.keys(policy.name)
            if not any(r.state is KeyState.ACTIVE for r in records):
                records.append(await self._bootstrap_key(policy))
            for record in records:
                if record.state in PUBLISHED_STATES:
                    await self._prove(ref_of(record), kid=record.kid)
                if record.state is KeyState.ACTIVE:
                    self._watermarks.seed(record)
            self._views[policy.name] = RingView.build(policy, records)

    async def generate_key(self, policy: RingPolicy, *, state: KeyState) -> KeyRecord:
        """Generate a key on the token and describe it; the caller persists the record."""
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
            state=state,
            created_at=now,
            published_at=now,
            activated_at=now if state is KeyState.ACTIVE else None,
        )

    async def _bootstrap_key(self, policy: RingPolicy) -> KeyRecord:
        # A brand-new ring has no relying party yet, so its first key may sign at once; every
        # later key is pre-published (the rotation issue).
        record = await self.generate_key(policy, state=KeyState.ACTIVE)
        await self.store.insert_key(record)
        log.info(
            "generated first key of ring",
            extra={"ring": policy.name, "kid": record.kid, "alg": record.alg.value},
        )
        return record

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

    async def sign_jwt(self, ring: str, request: JwtRequest) -> SignedJwt:
        """Sign ``request``'s claims with the ring's active key."""
        view = self.view(ring)
        key = view.signing
        if key is None:
            raise KeyNotActive(f"ring {ring!r} has no active key")
        now = int(self.clock())
        claims = request.claims_at(now, token_max_ttl=view.policy.token_max_ttl)
        exp: int = claims["exp"]
        await self._watermarks.ensure(key.record.kid, exp)
        data = signing_input(key.header(request.typ), encode_claims(claims))
        signature = await self.backend.sign(key.ref, data)
        return SignedJwt(
            jwt=compact(data, signature),
            kid=key.record.kid,
            alg=key.record.alg.value,
            exp=exp,
            jti=str(claims["jti"]),
        )
