"""The in-memory view of each ring: its records, the active signing key and the JWKS bytes.

Everything a request needs is computed here once per key-set change, so the signing and JWKS
hot paths only look up a dict and concatenate bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jwks.document import JwksDocument, build_jwks
from jwks.jwk import Jwk, published_jwk
from jwks.jws import encode_header
from jwks.lifecycle import next_jwks_change, published
from jwks.records import KeyRecord, KeyState
from signer.hsm.base import KeyRef
from signer.settings import RingPolicy

# Seconds a cache may serve a stale JWKS while it revalidates (RFC 5861): at most 30, and at
# most half of the time the document may be held in all (``RingView.cache_headers``).
STALE_WHILE_REVALIDATE = 30
# A key can be published up to this long before every worker serves it: a follower re-reads
# the store every half second, and ``published_at`` is whole seconds. A cached JWKS must
# expire before a key published after it was fetched may sign (``prepublish`` after
# ``published_at``), so caches hold it this much less than ``jwks_max_age``.
PUBLICATION_SLACK = 2


def ref_of(record: KeyRecord) -> KeyRef:
    """The token location of a recorded key."""
    return KeyRef(key_id=record.key_id, label=record.label, alg=record.alg)


# Distinct ``typ`` values whose encoded header a signing key keeps. The caller picks ``typ``, so
# an unbounded cache would grow with every new value for as long as the key signs; past this
# many, a header is encoded per request (a few microseconds).
MAX_CACHED_HEADERS = 16


@dataclass(slots=True, kw_only=True)
class SigningKey:
    """The active key of a ring, with its encoded JWS headers cached per ``typ``."""

    record: KeyRecord
    ref: KeyRef
    _headers: dict[str, bytes] = field(default_factory=dict)

    def header(self, typ: str) -> bytes:
        """The base64url JWS header for ``typ``, encoded once for the first few ``typ``s."""
        encoded = self._headers.get(typ)
        if encoded is None:
            encoded = encode_header(self.record.alg, self.record.kid, typ)
            if len(self._headers) < MAX_CACHED_HEADERS:
                self._headers[typ] = encoded
        return encoded


@dataclass(frozen=True, slots=True, kw_only=True)
class RingView:
    """One ring as of its last change: records, signing key and JWKS document."""

    policy: RingPolicy
    records: tuple[KeyRecord, ...]
    signing: SigningKey | None
    jwks: JwksDocument

    changes_at: int | None  # when the key set next changes by schedule
    # Response headers by max-age, built once each: the JWKS hot path only looks them up.
    _headers: dict[int, Mapping[str, str]] = field(default_factory=dict, compare=False)

    def cache_max_age(self, now: int) -> int:
        """Seconds a relying party may hold this JWKS in all (fresh, then stale while it
        revalidates).

        ``PUBLICATION_SLACK`` less than ``jwks_max_age``, and never past the next scheduled
        change of the key set.
        """
        limit = self.policy.jwks_max_age - PUBLICATION_SLACK
        if self.changes_at is not None:
            limit = min(limit, self.changes_at - now)
        return max(0, limit)

    def cache_headers(self, now: int) -> Mapping[str, str]:
        """``ETag`` and ``Cache-Control`` for a JWKS response (200 or 304) served at ``now``:
        ``max-age`` plus ``stale-while-revalidate`` is ``cache_max_age``."""
        held = self.cache_max_age(now)
        headers = self._headers.get(held)
        if headers is None:
            stale = min(STALE_WHILE_REVALIDATE, held // 2)
            headers = self._headers[held] = {
                "ETag": self.jwks.etag,
                "Cache-Control": f"public, max-age={held - stale}, stale-while-revalidate={stale}",
            }
        return headers

    @classmethod
    def build(cls, policy: RingPolicy, records: Sequence[KeyRecord]) -> RingView:
        """Compute the view from the ring's records."""
        active = [r for r in records if r.state is KeyState.ACTIVE]
        signing = None
        if active:
            record = active[0]
            signing = SigningKey(record=record, ref=ref_of(record))
        return cls(
            policy=policy,
            records=tuple(records),
            signing=signing,
            jwks=build_jwks(published_keys(records)),
            changes_at=next_jwks_change(policy, records),
        )


def published_keys(records: Sequence[KeyRecord]) -> list[Jwk]:
    """The JWKs of the records that belong in the JWKS, oldest first.

    The order depends only on the records, so every replica renders the same bytes.
    """
    return [published_jwk(r.alg, Jwk(**r.jwk), r.kid) for r in published(records)]  # type: ignore[typeddict-item]
