"""CKA_EC_POINT / CKA_EC_PARAMS parsing: DER-wrapped (SoftHSM) and raw (other tokens) points."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pkcs11.util.ec import encode_named_curve_parameters

from signer.hsm.ecpoint import Curve, curve_from_params, ec_spki, rsa_spki, unwrap_ec_point

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
DER = serialization.Encoding.DER


def der_octet_string(content: bytes) -> bytes:
    assert len(content) < 256
    length = bytes([len(content)]) if len(content) < 128 else b"\x81" + bytes([len(content)])
    return b"\x04" + length + content


def ec_point(curve: ec.EllipticCurve) -> tuple[bytes, bytes]:
    public = ec.generate_private_key(curve).public_key()
    return public.public_bytes(DER, SPKI), public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def ed25519_point() -> tuple[bytes, bytes]:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(DER, SPKI), public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


CASES = [
    pytest.param(Curve.P256, "secp256r1", lambda: ec_point(ec.SECP256R1()), id="P-256"),
    pytest.param(Curve.P384, "secp384r1", lambda: ec_point(ec.SECP384R1()), id="P-384"),
    pytest.param(Curve.ED25519, "1.3.101.112", ed25519_point, id="Ed25519"),
]


@pytest.mark.parametrize(("curve", "name", "make"), CASES)
@pytest.mark.parametrize("wrapped", [True, False], ids=["der-wrapped", "raw"])
def test_ec_spki_accepts_der_wrapped_and_raw_points(
    curve: Curve, name: str, make: Callable[[], tuple[bytes, bytes]], *, wrapped: bool
) -> None:
    expected, raw = make()
    value = der_octet_string(raw) if wrapped else raw
    params = encode_named_curve_parameters(name)

    assert unwrap_ec_point(value, curve) == raw
    assert ec_spki(params, value) == expected


def test_non_minimal_der_length_is_rejected() -> None:
    """X.690 §10.1: DER uses the short length form below 128, so 0x81 0x61 is not DER."""
    _, raw = ec_point(ec.SECP384R1())
    with pytest.raises(ValueError, match="point"):
        unwrap_ec_point(b"\x04\x81" + bytes([len(raw)]) + raw, Curve.P384)


def test_wrapped_point_of_the_wrong_curve_is_rejected() -> None:
    _, raw = ec_point(ec.SECP384R1())
    with pytest.raises(ValueError, match="secp256r1"):
        unwrap_ec_point(der_octet_string(raw), Curve.P256)


def test_compressed_point_is_rejected() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    compressed = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    with pytest.raises(ValueError, match="point"):
        unwrap_ec_point(der_octet_string(compressed), Curve.P256)


def test_truncated_der_wrapping_is_rejected() -> None:
    _, raw = ec_point(ec.SECP256R1())
    with pytest.raises(ValueError, match="point"):
        unwrap_ec_point(der_octet_string(raw)[:-1], Curve.P256)


def test_edwards25519_printable_string_params_name_ed25519() -> None:
    """PKCS#11 v3.0 lets tokens name Edwards curves by PrintableString instead of an OID."""
    assert curve_from_params(b"\x13\x0cedwards25519") is Curve.ED25519


def test_unknown_curve_params_are_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported CKA_EC_PARAMS"):
        curve_from_params(encode_named_curve_parameters("secp521r1"))


def test_rsa_spki_round_trips_modulus_and_exponent() -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    numbers = public.public_numbers()

    assert rsa_spki(numbers.n, numbers.e) == public.public_bytes(DER, SPKI)
