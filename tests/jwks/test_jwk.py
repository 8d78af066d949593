"""Public JWKs from SubjectPublicKeyInfo, published JWKs, and the way back to a key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from jwks.algorithms import Alg
from jwks.b64 import b64url_decode, b64url_encode
from jwks.jwk import Jwk, public_jwk, public_key_from_jwk, published_jwk

_VECTORS_DIR = Path(__file__).parent / "vectors"
_THUMBPRINTS: dict[str, dict[str, Any]] = {
    vector["name"]: vector
    for vector in json.loads((_VECTORS_DIR / "jwk_thumbprints.json").read_text(encoding="utf-8"))[
        "vectors"
    ]
}
_RFC7638_RSA: dict[str, str] = _THUMBPRINTS["rfc7638-section-3.1-rsa"]["jwk"]
_RFC8037_OKP: dict[str, str] = _THUMBPRINTS["rfc8037-appendix-a.3-ed25519"]["jwk"]


def _spki(key: Any) -> bytes:
    return cast(
        bytes,
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def _rsa_public(n: int, e: int = 65537) -> rsa.RSAPublicKey:
    # Public numbers need no key generation: any odd modulus of the right size loads.
    return rsa.RSAPublicNumbers(e, n).public_key()


def _rfc7638_rsa_spki() -> bytes:
    n = int.from_bytes(b64url_decode(_RFC7638_RSA["n"]), "big")
    return _spki(_rsa_public(n))


def _ec_spki(curve: ec.EllipticCurve, scalar: int = 7) -> bytes:
    return _spki(ec.derive_private_key(scalar, curve).public_key())


def _ed25519_spki() -> bytes:
    x = b64url_decode(_RFC8037_OKP["x"])
    return _spki(ed25519.Ed25519PublicKey.from_public_bytes(x))


def test_rsa_jwk_matches_rfc7638_key() -> None:
    """RFC 7518 §6.3.1: n and e are minimal big-endian octets, base64url."""
    assert public_jwk(Alg.RS256, _rfc7638_rsa_spki()) == {
        "kty": "RSA",
        "n": _RFC7638_RSA["n"],
        "e": "AQAB",
    }


def test_ed25519_jwk_matches_rfc8037_key() -> None:
    assert public_jwk(Alg.EDDSA, _ed25519_spki()) == _RFC8037_OKP


@pytest.mark.parametrize(
    ("alg", "curve", "crv", "size"),
    [(Alg.ES256, ec.SECP256R1(), "P-256", 32), (Alg.ES384, ec.SECP384R1(), "P-384", 48)],
)
def test_ec_jwk_has_full_size_coordinates(
    alg: Alg, curve: ec.EllipticCurve, crv: str, size: int
) -> None:
    jwk = public_jwk(alg, _ec_spki(curve))

    assert list(jwk) == ["kty", "crv", "x", "y"]
    assert (jwk["kty"], jwk["crv"]) == ("EC", crv)
    assert len(b64url_decode(jwk["x"])) == size
    assert len(b64url_decode(jwk["y"])) == size


def test_ec_coordinate_with_leading_zero_octet_is_left_padded() -> None:
    """RFC 7518 §6.2.1.2: x keeps its leading zero octet; a minimal encoding would be 31 octets."""
    scalar = next(
        k
        for k in range(1, 10_000)
        if ec.derive_private_key(k, ec.SECP256R1()).public_key().public_numbers().x < 1 << 248
    )
    key = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()

    x = b64url_decode(public_jwk(Alg.ES256, _spki(key))["x"])

    assert len(x) == 32
    assert x[0] == 0
    assert int.from_bytes(x, "big") == key.public_numbers().x


def test_rsa_exponent_is_minimal() -> None:
    jwk = public_jwk(Alg.PS256, _spki(_rsa_public(_rsa_modulus(2048), e=3)))

    assert jwk["e"] == "Aw"


def _rsa_modulus(bits: int) -> int:
    # An odd number with the top bit set: a valid-looking modulus without generating primes.
    return (1 << (bits - 1)) | (0xC0FFEE << 8) | 1


@pytest.mark.parametrize(
    ("alg", "spki", "message"),
    [
        (Alg.ES256, _ec_spki(ec.SECP384R1()), "ES256 needs an EC P-256 key, got an EC P-384 key"),
        (Alg.ES384, _ec_spki(ec.SECP256R1()), "ES384 needs an EC P-384 key, got an EC P-256 key"),
        (Alg.ES256, _ec_spki(ec.SECP256K1()), "got an EC secp256k1 key"),
        (Alg.ES256, _ed25519_spki(), "ES256 needs an EC P-256 key, got an Ed25519 key"),
        (
            Alg.RS256,
            _spki(_rsa_public(_rsa_modulus(1024))),
            "RS256 needs an RSA key of at least 2048 bits, got an RSA 1024-bit key",
        ),
        (Alg.PS256, _spki(_rsa_public(_rsa_modulus(2047))), "got an RSA 2047-bit key"),
        (Alg.PS256, _ec_spki(ec.SECP256R1()), "PS256 needs an RSA key"),
        (Alg.EDDSA, _rfc7638_rsa_spki(), "EdDSA needs an Ed25519 key, got an RSA 2048-bit key"),
        (
            Alg.EDDSA,
            _spki(ed448.Ed448PrivateKey.from_private_bytes(bytes(57)).public_key()),
            "EdDSA needs an Ed25519 key, got a key of type Ed448",
        ),
    ],
    ids=[
        "P-384-for-ES256",
        "P-256-for-ES384",
        "secp256k1-for-ES256",
        "Ed25519-for-ES256",
        "RSA-1024",
        "RSA-2047",
        "EC-for-PS256",
        "RSA-for-EdDSA",
        "Ed448-for-EdDSA",
    ],
)
def test_public_jwk_rejects_key_that_does_not_fit_alg(alg: Alg, spki: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        public_jwk(alg, spki)


def test_public_jwk_rejects_bytes_that_are_not_spki() -> None:
    with pytest.raises(ValueError, match="not a DER SubjectPublicKeyInfo"):
        public_jwk(Alg.ES256, b"\x30\x03\x02\x01\x01")


def test_published_jwk_adds_kid_alg_use_after_key_members() -> None:
    jwk = published_jwk(Alg.ES256, public_jwk(Alg.ES256, _ec_spki(ec.SECP256R1())), "kid-1")

    assert list(jwk) == ["kty", "crv", "x", "y", "kid", "alg", "use"]
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("kid-1", "ES256", "sig")


def test_published_jwk_member_order_does_not_depend_on_input_order() -> None:
    members = public_jwk(Alg.RS256, _rfc7638_rsa_spki())
    reordered = cast(Jwk, dict(reversed(list(members.items()))))

    first = published_jwk(Alg.RS256, members, "k")
    second = published_jwk(Alg.RS256, reordered, "k")

    assert json.dumps(first) == json.dumps(second)


def test_published_jwk_drops_private_and_unknown_members() -> None:
    """A private JWK passed by mistake must not leak ``d`` into the JWKS."""
    private = cast(Jwk, {**_RFC8037_OKP, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"})

    jwk = published_jwk(Alg.EDDSA, private, "k")

    assert dict(jwk) == {**_RFC8037_OKP, "kid": "k", "alg": "EdDSA", "use": "sig"}


def test_published_jwk_replaces_stale_kid_alg_use() -> None:
    members = cast(Jwk, {**_RFC8037_OKP, "kid": "old", "alg": "Ed25519", "use": "enc"})

    jwk = published_jwk(Alg.EDDSA, members, "new")

    assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("new", "EdDSA", "sig")


@pytest.mark.parametrize(
    ("alg", "members"),
    [
        (Alg.ES256, Jwk(kty="EC", crv="P-384", x="AA", y="AA")),
        (Alg.RS256, Jwk(kty="EC", crv="P-256", x="AA", y="AA")),
        (Alg.EDDSA, Jwk(kty="OKP", crv="X25519", x="AA")),
    ],
    ids=["wrong-curve", "wrong-kty", "X25519-for-EdDSA"],
)
def test_published_jwk_rejects_members_for_another_alg(alg: Alg, members: Jwk) -> None:
    with pytest.raises(ValueError, match=f"{alg} needs"):
        published_jwk(alg, members, "k")


def test_published_jwk_rejects_missing_key_member() -> None:
    with pytest.raises(ValueError, match="lacks the 'e' member"):
        published_jwk(Alg.RS256, Jwk(kty="RSA", n="AQAB"), "k")


def test_published_jwk_rejects_empty_kid() -> None:
    with pytest.raises(ValueError, match="kid must not be empty"):
        published_jwk(Alg.EDDSA, cast(Jwk, _RFC8037_OKP), "")


@pytest.mark.parametrize(
    ("alg", "spki"),
    [
        (Alg.ES256, _ec_spki(ec.SECP256R1())),
        (Alg.ES384, _ec_spki(ec.SECP384R1())),
        (Alg.RS256, _rfc7638_rsa_spki()),
        (Alg.EDDSA, _ed25519_spki()),
    ],
    ids=["ES256", "ES384", "RSA", "EdDSA"],
)
def test_public_key_from_jwk_gives_back_the_same_key(alg: Alg, spki: bytes) -> None:
    assert _spki(public_key_from_jwk(public_jwk(alg, spki))) == spki


def test_public_key_from_jwk_rejects_short_ec_coordinate() -> None:
    """RFC 7518 §6.2.1.2: a coordinate stripped of its leading zero octet is malformed."""
    jwk = public_jwk(Alg.ES256, _ec_spki(ec.SECP256R1()))
    jwk["x"] = b64url_encode(b64url_decode(jwk["x"])[1:])

    with pytest.raises(ValueError, match="must be 32 octets"):
        public_key_from_jwk(jwk)


def test_public_key_from_jwk_rejects_point_off_the_curve() -> None:
    jwk = public_jwk(Alg.ES256, _ec_spki(ec.SECP256R1()))
    y = bytearray(b64url_decode(jwk["y"]))
    y[-1] ^= 1
    jwk["y"] = b64url_encode(bytes(y))

    with pytest.raises(ValueError, match="not a point on P-256"):
        public_key_from_jwk(jwk)


def test_public_key_from_jwk_rejects_rsa_modulus_with_leading_zero() -> None:
    """RFC 7518 §6.3.1.1: n uses the minimum number of octets."""
    padded = b64url_encode(b"\x00" + b64url_decode(_RFC7638_RSA["n"]))

    with pytest.raises(ValueError, match="leading zero"):
        public_key_from_jwk(Jwk(kty="RSA", n=padded, e="AQAB"))


def test_public_key_from_jwk_rejects_non_base64url_member() -> None:
    with pytest.raises(ValueError, match="member 'x'"):
        public_key_from_jwk(Jwk(kty="OKP", crv="Ed25519", x=_RFC8037_OKP["x"] + "="))


@pytest.mark.parametrize(
    "jwk",
    [
        Jwk(kty="oct"),
        Jwk(kty="EC", crv="P-521", x="AA", y="AA"),
        Jwk(kty="OKP", crv="Ed448", x="AA"),
    ],
    ids=["oct", "P-521", "Ed448"],
)
def test_public_key_from_jwk_rejects_unsupported_key_types(jwk: Jwk) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        public_key_from_jwk(jwk)
