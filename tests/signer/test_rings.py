"""A ring's signing key: its JWS headers, cached for the few ``typ`` values callers use."""

from __future__ import annotations

import json

from jwks.b64 import b64url_decode
from signer.rings import MAX_CACHED_HEADERS, SigningKey, ref_of
from tests.signer.store.test_conformance import record


def test_headers_are_right_for_every_typ_and_the_cache_stays_bounded() -> None:
    """``typ`` is the caller's: a new value per request must not grow the process forever."""
    active = record("k1")
    key = SigningKey(record=active, ref=ref_of(active))
    for n in range(MAX_CACHED_HEADERS * 4):
        typ = f"t{n}+jwt"
        header = json.loads(b64url_decode(key.header(typ).decode()))
        assert header == {"alg": "ES256", "kid": "k1", "typ": typ}
    assert len(key._headers) == MAX_CACHED_HEADERS  # the bound is the point
    assert key.header("t0+jwt") is key.header("t0+jwt")  # the first ones stay cached
