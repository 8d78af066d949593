"""RFC 7638 JWK thumbprints, the signer's kids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from jwks.algorithms import Alg
from jwks.jwk import Jwk, public_jwk
from jwks.thumbprint import thumbprint, thumbprint_input

_VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "jwk_thumbprints.json").read_text(encoding="utf-8")
)["vectors"]
_BY_NAME = {vector["name"]: vector for vector in _VECTORS}


@pytest.mark.parametrize("vector", _VECTORS, ids=[v["name"] for v in _VECTORS])
def test_thumbprint_matches_spec_vector(vector: dict[str, Any]) -> None:
    """RFC 7638 §3.1 (RSA) and RFC 8037 A.3 (Ed25519)."""
    assert thumbprint(cast(Jwk, vector["jwk"])) == vector["thumbprint"]


@pytest.mark.parametrize("vector", _VECTORS, ids=[v["name"] for v in _VECTORS])
def test_thumbprint_input_is_sorted_compact_json_of_required_members(
    vector: dict[str, Any],
) -> None:
    assert thumbprint_input(cast(Jwk, vector["jwk"])) == vector["input"].encode("utf-8")


def test_ec_thumbprint_agrees_with_joserfc() -> None:
    """No RFC vector exists for EC; an independent implementation stands in for one."""
    key = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = public_jwk(Alg.ES256, spki)
    theirs = ECKey.import_key({name: str(value) for name, value in jwk.items()})

    assert thumbprint(jwk) == theirs.thumbprint()


_REQUIRED_NAMES = {"kty", "crv", "x", "y", "n", "e"}
_extra_members = st.dictionaries(
    keys=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
        lambda name: name not in _REQUIRED_NAMES
    ),
    values=st.one_of(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_ ", max_size=16),
        st.integers(),
        st.booleans(),
    ),
    max_size=6,
)


@settings(database=None, max_examples=50)
@given(
    name=st.sampled_from(sorted(_BY_NAME)),
    extra=_extra_members,
    data=st.data(),
)
def test_thumbprint_ignores_optional_members_and_member_order(
    name: str, extra: dict[str, object], data: st.DataObject
) -> None:
    """RFC 7638 §3.2: only the required members, in lexical order, are hashed."""
    vector = _BY_NAME[name]
    members = list({**extra, **vector["jwk"]}.items())
    shuffled = dict(data.draw(st.permutations(members)))

    assert thumbprint(cast(Jwk, shuffled)) == vector["thumbprint"]


def test_thumbprint_rejects_unknown_kty() -> None:
    with pytest.raises(ValueError, match="kty 'oct'"):
        thumbprint(cast(Jwk, {"kty": "oct", "k": "c2VjcmV0"}))


def test_thumbprint_rejects_missing_required_member() -> None:
    with pytest.raises(ValueError, match="required member 'y'"):
        thumbprint(Jwk(kty="EC", crv="P-256", x="AAAA"))


def test_thumbprint_rejects_padded_key_material() -> None:
    """A padded ``e`` would hash differently from every other implementation's kid."""
    with pytest.raises(ValueError, match="not unpadded base64url"):
        thumbprint(Jwk(kty="RSA", n="0vx7", e="AQAB="))
