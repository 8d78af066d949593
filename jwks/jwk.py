"""Public JWKs for the signer's keys (RFC 7517, RFC 7518 §6, RFC 8037 §2).

The HSM hands out a public key as a DER SubjectPublicKeyInfo; :func:`public_jwk` turns it into the
key-material members of a JWK, checking that the key is the one the ring's ``alg`` needs.
:func:`published_jwk` adds ``kid``, ``alg`` and ``use`` for the JWKS. :func:`public_key_from_jwk`
goes the other way, for verification.

Only public members ever appear here: the ``Jwk`` shape has no ``d``, and :func:`published_jwk`
copies only the members its key type defines, so a private JWK passed by mistake cannot leak.
"""

from __future__ import annotations

from typing import Final, TypeAlias, TypedDict

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwks.algorithms import SPECS, Alg
from jwks.b64 import b64url_decode, b64url_encode

__all__ = [
    "MIN_RSA_BITS",
    "Jwk",
    "JwkPublicKey",
    "public_jwk",
    "public_key_from_jwk",
    "published_jwk",
]


class Jwk(TypedDict, total=False):
    """A public JWK as the signer publishes it (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2)."""

    kty: str
    crv: str
    x: str
    y: str
    n: str
    e: str
    kid: str
    alg: str
    use: str


JwkPublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# RFC 7518 §3.3 and §3.5: "A key of size 2048 bits or larger MUST be used".
MIN_RSA_BITS: Final = 2048

# RFC 7518 §6.2.1.1 curve names for the SEC curve names cryptography reports.
_JOSE_CURVES: Final[dict[str, str]] = {"secp256r1": "P-256", "secp384r1": "P-384"}
_CURVES: Final[dict[str, ec.EllipticCurve]] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


def public_jwk(alg: Alg, spki_der: bytes) -> Jwk:
    """Return the public JWK members for ``spki_der``, a DER SubjectPublicKeyInfo for ``alg``.

    Raises ``ValueError`` if the bytes are not a public key or the key does not fit ``alg``
    (wrong key type, wrong curve, RSA modulus under 2048 bits).
    """
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{alg}: not a DER SubjectPublicKeyInfo that can be parsed") from exc
    spec = SPECS[alg]
    if spec.kty == "EC" and isinstance(key, ec.EllipticCurvePublicKey):
        crv = _JOSE_CURVES.get(key.curve.name)
        if crv is not None and crv == spec.crv:
            return _ec_members(crv, key)
    elif spec.kty == "RSA" and isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_BITS:
            return _rsa_members(key)
    elif spec.kty == "OKP" and isinstance(key, ed25519.Ed25519PublicKey):
        return _okp_members(key)
    raise ValueError(f"{alg} needs {_wanted(alg)}, got {_describe(key)}")


def published_jwk(alg: Alg, jwk_members: Jwk, kid: str) -> Jwk:
    """Return the JWK to publish: the key members of ``jwk_members`` plus ``kid``, ``alg``, ``use``.

    Members come out in a fixed order (key material as RFC 7518 and RFC 8037 list it, then
    ``kid``, ``alg``, ``use``) whatever order ``jwk_members`` has; any other member is dropped.
    Raises ``ValueError`` if ``jwk_members`` is not a key of the type and curve ``alg`` needs.
    """
    spec = SPECS[alg]
    if jwk_members.get("kty") != spec.kty or jwk_members.get("crv") != spec.crv:
        got = f"kty={jwk_members.get('kty')!r} crv={jwk_members.get('crv')!r}"
        raise ValueError(f"{alg} needs {_wanted(alg)}, got a JWK with {got}")
    if not kid:
        raise ValueError("kid must not be empty")
    if spec.kty == "EC":
        published = Jwk(
            kty="EC",
            crv=_required(alg, jwk_members, "crv"),
            x=_required(alg, jwk_members, "x"),
            y=_required(alg, jwk_members, "y"),
        )
    elif spec.kty == "RSA":
        n = _required(alg, jwk_members, "n")
        published = Jwk(kty="RSA", n=n, e=_required(alg, jwk_members, "e"))
    else:
        published = Jwk(
            kty="OKP", crv=_required(alg, jwk_members, "crv"), x=_required(alg, jwk_members, "x")
        )
    # RFC 7517 §4.5 "kid" names the key; §4.4 "alg" pins it to one algorithm; §4.2 "use": "sig".
    published["kid"] = kid
    published["alg"] = alg.value
    published["use"] = "sig"
    return published


def public_key_from_jwk(jwk: Jwk) -> JwkPublicKey:
    """Return the public key that ``jwk`` describes; raise ``ValueError`` if it is malformed.

    Strict about encodings: EC coordinates must be the curve's full field size and RSA integers
    must have no leading zero octet, as RFC 7518 requires.
    """
    kty = jwk.get("kty")
    if kty == "EC":
        crv = _member(jwk, "crv")
        curve = _CURVES.get(crv)
        if curve is None:
            raise ValueError(f"EC JWK: unsupported crv {crv!r}; expected one of {list(_CURVES)}")
        size = _field_size(curve)
        x = _b64_member(jwk, "x")
        y = _b64_member(jwk, "y")
        if len(x) != size or len(y) != size:
            # RFC 7518 §6.2.1.2/§6.2.1.3: "MUST be the full size of a coordinate for the curve".
            raise ValueError(f"EC JWK: x and y must be {size} octets for {crv}")
        try:
            # SEC 1 §2.3.4 uncompressed point; cryptography checks that it is on the curve.
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
        except ValueError as exc:
            raise ValueError(f"EC JWK: (x, y) is not a point on {crv}") from exc
    if kty == "RSA":
        n = _unsigned_member(jwk, "n")
        e = _unsigned_member(jwk, "e")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise ValueError(f"RSA JWK: not a valid public key: {exc}") from exc
    if kty == "OKP":
        crv = _member(jwk, "crv")
        if crv != "Ed25519":
            raise ValueError(f"OKP JWK: unsupported crv {crv!r}; expected 'Ed25519'")
        x = _b64_member(jwk, "x")
        if len(x) != 32:
            # RFC 8032 §5.1.5: an Ed25519 public key is 32 octets.
            raise ValueError("OKP JWK: an Ed25519 x must be 32 octets")
        return ed25519.Ed25519PublicKey.from_public_bytes(x)
    raise ValueError(f"unsupported kty {kty!r}; expected 'EC', 'RSA' or 'OKP'")


def _ec_members(crv: str, key: ec.EllipticCurvePublicKey) -> Jwk:
    numbers = key.public_numbers()
    # RFC 7518 §6.2.1.2: "The length of this octet string MUST be the full size of a coordinate
    # for the curve specified in the "crv" parameter" (so leading zeros are kept).
    size = _field_size(key.curve)
    return Jwk(
        kty="EC",
        crv=crv,
        x=b64url_encode(numbers.x.to_bytes(size, "big")),
        y=b64url_encode(numbers.y.to_bytes(size, "big")),
    )


def _rsa_members(key: rsa.RSAPublicKey) -> Jwk:
    numbers = key.public_numbers()
    # RFC 7518 §6.3.1.1/§6.3.1.2: unsigned big-endian with the minimum number of octets.
    return Jwk(kty="RSA", n=_minimal_b64(numbers.n), e=_minimal_b64(numbers.e))


def _okp_members(key: ed25519.Ed25519PublicKey) -> Jwk:
    # RFC 8037 §2: "x" is the base64url of the public key bytes (RFC 8032 §5.1.5 encoding).
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Jwk(kty="OKP", crv="Ed25519", x=b64url_encode(raw))


def _field_size(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def _minimal_b64(value: int) -> str:
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _wanted(alg: Alg) -> str:
    spec = SPECS[alg]
    if spec.kty == "EC":
        return f"an EC {spec.crv} key"
    if spec.kty == "RSA":
        return f"an RSA key of at least {MIN_RSA_BITS} bits"
    return f"an {spec.crv} key"


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {_JOSE_CURVES.get(key.curve.name, key.curve.name)} key"
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA {key.key_size}-bit key"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    # Ed448, X25519, DSA, ...: cryptography's class name says what it is.
    return f"a key of type {type(key).__name__.removesuffix('PublicKey')}"


def _required(alg: Alg, jwk: Jwk, name: str) -> str:
    value = jwk.get(name)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{alg} JWK lacks the {name!r} member")


def _member(jwk: Jwk, name: str) -> str:
    value = jwk.get(name)
    if isinstance(value, str):
        return value
    raise ValueError(f"{jwk.get('kty')} JWK: member {name!r} is missing or not a string")


def _b64_member(jwk: Jwk, name: str) -> bytes:
    try:
        return b64url_decode(_member(jwk, name))
    except ValueError as exc:
        raise ValueError(f"{jwk.get('kty')} JWK: member {name!r}: {exc}") from exc


def _unsigned_member(jwk: Jwk, name: str) -> int:
    raw = _b64_member(jwk, name)
    if not raw or raw[0] == 0:
        # RFC 7518 §6.3.1.1: "MUST utilize the minimum number of octets".
        raise ValueError(f"RSA JWK: member {name!r} must be non-empty without leading zero octets")
    return int.from_bytes(raw, "big")
