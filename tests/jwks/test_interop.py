"""Tokens we assemble verify in PyJWT and joserfc against the JWKs and JWKS we publish."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TypeAlias

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from joserfc import jwt as joserfc_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import JWKRegistry, KeySet

from jwks.algorithms import SPECS, Alg
from jwks.document import build_jwks
from jwks.jwk import Jwk, public_jwk, published_jwk
from jwks.jws import compact, der_to_raw_ecdsa, encode_claims, encode_header, signing_input
from jwks.thumbprint import thumbprint

_Sign: TypeAlias = Callable[[bytes], bytes]

_CLAIMS = {"iss": "https://idp.example", "sub": "jürgen", "jti": "t-1", "scope": ["a", "b"]}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """One 2048-bit key for the module: RSA key generation is the slow part."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _signer(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> tuple[bytes, _Sign]:
    """Return the SPKI DER and a JOSE-form ``sign`` for a fresh key of ``alg``."""
    if alg in (Alg.ES256, Alg.ES384):
        curve, digest = (
            (ec.SECP256R1(), hashes.SHA256())
            if alg is Alg.ES256
            else (ec.SECP384R1(), hashes.SHA384())
        )
        size = SPECS[alg].signature_size
        assert size is not None
        ec_key = ec.generate_private_key(curve)

        def sign_ec(data: bytes) -> bytes:
            # RFC 7518 §3.4: JOSE wants r || s, cryptography returns DER.
            return der_to_raw_ecdsa(ec_key.sign(data, ec.ECDSA(digest)), size)

        return _spki(ec_key.public_key()), sign_ec
    if alg is Alg.RS256:
        return _spki(rsa_key.public_key()), lambda data: rsa_key.sign(
            data, padding.PKCS1v15(), hashes.SHA256()
        )
    if alg is Alg.PS256:
        # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return _spki(rsa_key.public_key()), lambda data: rsa_key.sign(data, pss, hashes.SHA256())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return _spki(ed_key.public_key()), ed_key.sign


def _spki(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issue(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> tuple[Jwk, str]:
    """Return the published JWK and a token, built the way the service builds them."""
    spki, sign = _signer(alg, rsa_key)
    members = public_jwk(alg, spki)
    kid = thumbprint(members)
    jwk = published_jwk(alg, members, kid)
    data = signing_input(encode_header(alg, kid, "JWT"), encode_claims(_CLAIMS))
    return jwk, compact(data, sign(data))


def _joserfc_dict(jwk: Jwk) -> dict[str, str | list[str]]:
    # joserfc types a JWK as str-or-list values; every member we publish is a string.
    return {name: str(value) for name, value in jwk.items()}


def _joserfc_warnings(alg: Alg) -> contextlib.AbstractContextManager[object]:
    # joserfc flags "EdDSA" as deprecated by RFC 9864 (in favour of "Ed25519"); PyJWT knows only
    # "EdDSA". The warning is expected; anything else still fails the test.
    if alg is Alg.EDDSA:
        return pytest.warns(SecurityWarning, match="RFC 9864")
    return contextlib.nullcontext()


@pytest.mark.parametrize("alg", list(Alg))
def test_pyjwt_verifies_token_with_published_jwk(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> None:
    jwk, token = _issue(alg, rsa_key)

    claims = jwt.decode(token, key=jwt.PyJWK(dict(jwk)), algorithms=[alg.value])

    assert claims == _CLAIMS
    assert jwt.get_unverified_header(token) == {"alg": alg.value, "kid": jwk["kid"], "typ": "JWT"}


@pytest.mark.parametrize("alg", list(Alg))
def test_pyjwt_finds_key_by_kid_in_jwks_document(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> None:
    jwk, token = _issue(alg, rsa_key)
    other, _ = _issue(Alg.ES256, rsa_key)
    key_set = jwt.PyJWKSet.from_json(build_jwks([other, jwk]).body.decode("ascii"))

    claims = jwt.decode(token, key=key_set[jwk["kid"]], algorithms=[alg.value])

    assert claims == _CLAIMS


@pytest.mark.parametrize("alg", list(Alg))
def test_joserfc_verifies_token_with_published_jwk(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> None:
    jwk, token = _issue(alg, rsa_key)
    key = JWKRegistry.import_key(_joserfc_dict(jwk))

    with _joserfc_warnings(alg):
        decoded = joserfc_jwt.decode(token, key, algorithms=[alg.value])

    assert decoded.claims == _CLAIMS
    assert decoded.header == {"alg": alg.value, "kid": jwk["kid"], "typ": "JWT"}


@pytest.mark.parametrize("alg", list(Alg))
def test_joserfc_finds_key_by_kid_in_jwks_document(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> None:
    jwk, token = _issue(alg, rsa_key)
    other, _ = _issue(Alg.ES256, rsa_key)
    key_set = KeySet.import_key_set(json.loads(build_jwks([other, jwk]).body))

    with _joserfc_warnings(alg):
        decoded = joserfc_jwt.decode(token, key_set, algorithms=[alg.value])

    assert decoded.claims == _CLAIMS


@pytest.mark.parametrize("alg", list(Alg))
def test_joserfc_computes_the_same_kid(alg: Alg, rsa_key: rsa.RSAPrivateKey) -> None:
    """kid = RFC 7638 thumbprint, so any relying party can recompute it."""
    jwk, _ = _issue(alg, rsa_key)

    assert JWKRegistry.import_key(_joserfc_dict(jwk)).thumbprint() == jwk["kid"]


def test_token_signed_by_other_key_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    """The round trips above are not vacuous: a different ES256 key fails verification."""
    _, token = _issue(Alg.ES256, rsa_key)
    other, _ = _issue(Alg.ES256, rsa_key)

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, key=jwt.PyJWK(dict(other)), algorithms=["ES256"])
