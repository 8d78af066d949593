"""Turn PKCS#11 public-key attributes into DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7).

Pure functions over attribute bytes, kept apart from the adapter so the parsing rules (the
part that differs between tokens) can be unit-tested without an HSM.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Curve(enum.StrEnum):
    """The curves the signer generates keys on (named as in ``pkcs11.util.ec``)."""

    P256 = "secp256r1"
    P384 = "secp384r1"
    ED25519 = "ed25519"


# DER of the ECParameters / CK_EC_PARAMS value of each curve: a namedCurve OID (RFC 5480 §2.1.1,
# RFC 8410 §3). PKCS#11 v3.0 §2.3.6 also lets tokens name Edwards curves by PrintableString.
_PARAMS: dict[bytes, Curve] = {
    bytes.fromhex("06082a8648ce3d030107"): Curve.P256,  # 1.2.840.10045.3.1.7
    bytes.fromhex("06052b81040022"): Curve.P384,  # 1.3.132.0.34
    bytes.fromhex("06032b6570"): Curve.ED25519,  # 1.3.101.112 (id-Ed25519)
    b"\x13\x0c" + b"edwards25519": Curve.ED25519,
}

# Length of the point as the public key's raw encoding: SEC 1 §2.3.3 uncompressed 04||X||Y for
# the Weierstrass curves, the 32-byte RFC 8032 §5.1.2 encoding for Ed25519.
_POINT_SIZE: dict[Curve, int] = {Curve.P256: 65, Curve.P384: 97, Curve.ED25519: 32}

_EC_CURVES: dict[Curve, ec.EllipticCurve] = {
    Curve.P256: ec.SECP256R1(),
    Curve.P384: ec.SECP384R1(),
}

_OCTET_STRING = 0x04


def curve_from_params(params: bytes) -> Curve:
    """Return the curve named by a ``CKA_EC_PARAMS`` value; raise ``ValueError`` for others."""
    try:
        return _PARAMS[bytes(params)]
    except KeyError:
        raise ValueError(f"unsupported CKA_EC_PARAMS {bytes(params).hex()}") from None


def unwrap_ec_point(value: bytes, curve: Curve) -> bytes:
    """Return the raw point from a ``CKA_EC_POINT`` value, DER-wrapped or not.

    PKCS#11 v2.40 §2.3.3 says ``CKA_EC_POINT`` is a DER OCTET STRING (SoftHSM does this); some
    tokens return the bare point. The OCTET STRING tag (0x04) is also the SEC 1 uncompressed
    point prefix, so the two forms are told apart by their exact lengths, which never collide.
    """
    value = bytes(value)
    size = _POINT_SIZE[curve]
    if len(value) == size and _looks_raw(value, curve):
        return value
    content = _der_octet_string(value)
    if content is None or len(content) != size or not _looks_raw(content, curve):
        raise ValueError(f"CKA_EC_POINT is not a {curve} point, raw or DER-wrapped")
    return content


def ec_spki(params: bytes, point: bytes) -> bytes:
    """Build the SubjectPublicKeyInfo of an EC or Ed25519 key from its PKCS#11 attributes."""
    curve = curve_from_params(params)
    raw = unwrap_ec_point(point, curve)
    if curve is Curve.ED25519:
        return _spki(Ed25519PublicKey.from_public_bytes(raw))
    return _spki(ec.EllipticCurvePublicKey.from_encoded_point(_EC_CURVES[curve], raw))


def rsa_spki(modulus: int, public_exponent: int) -> bytes:
    """Build the SubjectPublicKeyInfo of an RSA key from ``CKA_MODULUS``/``CKA_PUBLIC_EXPONENT``."""
    return _spki(rsa.RSAPublicNumbers(public_exponent, modulus).public_key())


def _looks_raw(point: bytes, curve: Curve) -> bool:
    # Ed25519 encodings are opaque 32 bytes; Weierstrass points must be uncompressed (SEC 1).
    return curve is Curve.ED25519 or point[:1] == b"\x04"


def _der_octet_string(value: bytes) -> bytes | None:
    """Return the content of a definite-length DER OCTET STRING, or None if it is not one."""
    if len(value) < 2 or value[0] != _OCTET_STRING:
        return None
    first = value[1]
    if first < 0x80:
        # X.690 §8.1.3.4: short form, the byte is the length.
        length, start = first, 2
    elif first == 0x81:
        # X.690 §8.1.3.5 long form with one length octet; DER forbids it below 128.
        if len(value) < 3 or value[2] < 0x80:
            return None
        length, start = value[2], 3
    else:
        return None  # no point we support is 256 bytes or longer
    if len(value) != start + length:
        return None
    return value[start:]


def _spki(key: ec.EllipticCurvePublicKey | Ed25519PublicKey | rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
