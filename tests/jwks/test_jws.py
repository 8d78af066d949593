"""Compact JWS assembly, JSON encodings, base64url and ECDSA signature forms."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwks.algorithms import Alg
from jwks.b64 import b64url_decode
from jwks.jws import (
    b64url_encode,
    b64url_encode_ascii,
    compact,
    der_to_raw_ecdsa,
    encode_claims,
    encode_header,
    raw_to_der_ecdsa,
    signing_input,
)

_ED25519_VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "ed25519_jws.json").read_text(encoding="utf-8")
)["vectors"]
_IDS = [vector["name"] for vector in _ED25519_VECTORS]


@pytest.mark.parametrize("vector", _ED25519_VECTORS, ids=_IDS)
def test_signing_input_matches_rfc8037_vector(vector: dict[str, Any]) -> None:
    encoded_header = b64url_encode_ascii(vector["protected_header"].encode("utf-8"))

    assert encoded_header == vector["encoded_header"].encode("ascii")
    assert signing_input(encoded_header, vector["payload"].encode("utf-8")) == vector[
        "signing_input"
    ].encode("ascii")


@pytest.mark.parametrize("vector", _ED25519_VECTORS, ids=_IDS)
def test_compact_reproduces_rfc8037_jws(vector: dict[str, Any]) -> None:
    """Ed25519 is deterministic, so the RFC's key must give the RFC's signature and JWS."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(vector["private_jwk"]["d"]))
    data = signing_input(
        vector["encoded_header"].encode("ascii"), vector["payload"].encode("utf-8")
    )
    signature = key.sign(data)

    assert b64url_encode(signature) == vector["signature"]
    assert compact(data, signature) == vector["jws"]


def test_encode_header_is_compact_json_in_alg_kid_typ_order() -> None:
    header = encode_header(Alg.ES256, "kid-1", "JWT")

    assert b64url_decode(header) == b'{"alg":"ES256","kid":"kid-1","typ":"JWT"}'


def test_encode_header_leaves_out_typ_when_none() -> None:
    assert b64url_decode(encode_header(Alg.EDDSA, "k", None)) == b'{"alg":"EdDSA","kid":"k"}'


def test_encode_header_escapes_json_in_kid() -> None:
    header = json.loads(b64url_decode(encode_header(Alg.RS256, 'a"b\\c', "at+jwt")))

    assert header == {"alg": "RS256", "kid": 'a"b\\c', "typ": "at+jwt"}


def test_encode_header_rejects_empty_kid() -> None:
    with pytest.raises(ValueError, match="kid must not be empty"):
        encode_header(Alg.ES256, "", None)


def test_encode_claims_is_compact_utf8_json_in_mapping_order() -> None:
    claims = {"sub": "jürgen", "iat": 1, "aud": ["a", "b"], "x": None}

    assert encode_claims(claims) == '{"sub":"jürgen","iat":1,"aud":["a","b"],"x":null}'.encode()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_encode_claims_rejects_non_json_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_claims({"n": value})


def test_encode_claims_rejects_lone_surrogate() -> None:
    """JSON parsers accept ``"\\ud800"``; it has no UTF-8 encoding."""
    with pytest.raises(ValueError, match="not valid Unicode"):
        encode_claims({"sub": "\ud800"})


def test_signing_input_base64url_encodes_payload_without_padding() -> None:
    assert signing_input(b"hdr", b"\xfb\xff") == b"hdr.-_8"


def test_compact_appends_base64url_signature() -> None:
    assert compact(b"hdr.pld", b"\xfb\xff\xfe") == "hdr.pld.-__-"


@pytest.mark.parametrize(
    ("curve", "hash_algorithm", "size"),
    [(ec.SECP256R1(), hashes.SHA256(), 64), (ec.SECP384R1(), hashes.SHA384(), 96)],
    ids=["P-256", "P-384"],
)
def test_ecdsa_der_and_raw_round_trip(
    curve: ec.EllipticCurve, hash_algorithm: hashes.HashAlgorithm, size: int
) -> None:
    key = ec.derive_private_key(11, curve)
    der = key.sign(b"data", ec.ECDSA(hash_algorithm))

    raw = der_to_raw_ecdsa(der, size)

    assert len(raw) == size
    assert raw_to_der_ecdsa(raw) == der
    key.public_key().verify(raw_to_der_ecdsa(raw), b"data", ec.ECDSA(hash_algorithm))


def test_der_to_raw_ecdsa_left_pads_small_integers() -> None:
    """RFC 7518 §3.4: r and s are each the curve's full octet length."""
    raw = der_to_raw_ecdsa(encode_dss_signature(1, 2), 64)

    assert raw == (1).to_bytes(32, "big") + (2).to_bytes(32, "big")


def test_der_to_raw_ecdsa_rejects_integer_too_large_for_size() -> None:
    with pytest.raises(ValueError, match="at most 32 octets"):
        der_to_raw_ecdsa(encode_dss_signature(1 << 256, 1), 64)


@pytest.mark.parametrize("size", [0, 63, -64])
def test_der_to_raw_ecdsa_rejects_impossible_size(size: int) -> None:
    with pytest.raises(ValueError, match="positive and even"):
        der_to_raw_ecdsa(encode_dss_signature(1, 1), size)


def test_der_to_raw_ecdsa_rejects_malformed_der() -> None:
    with pytest.raises(ValueError, match=r"(?i)signature|asn\.?1|der"):
        der_to_raw_ecdsa(b"\x30\x02\x02\x00", 64)


@pytest.mark.parametrize("raw", [b"", b"\x01\x02\x03"], ids=["empty", "odd"])
def test_raw_to_der_ecdsa_rejects_odd_or_empty_input(raw: bytes) -> None:
    with pytest.raises(ValueError, match="positive, even length"):
        raw_to_der_ecdsa(raw)


def test_raw_to_der_ecdsa_rejects_zero_integer() -> None:
    with pytest.raises(ValueError, match="must not be zero"):
        raw_to_der_ecdsa(bytes(32) + b"\x01" * 32)


@pytest.mark.parametrize(
    "value",
    ["AQAB=", "a+b/", "AQ AB", "A", "AR", "ü"],
    ids=["padding", "standard-alphabet", "whitespace", "impossible-length", "stray-bits", "utf8"],
)
def test_b64url_decode_rejects_non_canonical_input(value: str) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(value)


@pytest.mark.parametrize("length", range(6))
def test_b64url_round_trips_every_length_residue(length: int) -> None:
    data = bytes(range(250, 250 + length))

    assert b64url_decode(b64url_encode(data)) == data
