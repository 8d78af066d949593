"""Compact JWS assembly (RFC 7515 §7.1) around a signature made elsewhere.

The signer never holds a private key: the HSM signs the JWS signing input and this module only
builds bytes around it. The protected header is encoded once per key (:func:`encode_header`), so
issuing a token is two base64url encodings and a few concatenations.

Signatures are in JOSE form: raw ``r || s`` for ECDSA (RFC 7518 §3.4), the modulus-length octet
string for RSA (RFC 7518 §3.3, §3.5), the 64-octet signature for Ed25519 (RFC 8037 §3.1).
:func:`der_to_raw_ecdsa` and :func:`raw_to_der_ecdsa` convert ECDSA signatures for formats and
tools that use DER (X.509, Sigstore bundles, cryptography's ``sign``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from jwks.algorithms import Alg
from jwks.b64 import b64url_decode, b64url_encode, b64url_encode_ascii

__all__ = [
    "b64url_decode",
    "b64url_encode",
    "b64url_encode_ascii",
    "compact",
    "der_to_raw_ecdsa",
    "encode_claims",
    "encode_header",
    "raw_to_der_ecdsa",
    "signing_input",
]


def _compact_json(value: Mapping[str, object], what: str) -> bytes:
    try:
        # RFC 7519 §7.1 / RFC 8259: no whitespace needed; NaN and Infinity are not JSON.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # RFC 7515 §2: the JOSE header and a JWT payload are UTF-8.
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} contain a string that is not valid Unicode text") from exc


def encode_header(alg: Alg, kid: str, typ: str | None) -> bytes:
    """Return BASE64URL(UTF8(header)) for ``{"alg", "kid", "typ"}``; ``typ`` is left out if None.

    Compute it once per key and pass it to :func:`signing_input` for every token.
    """
    if not kid:
        raise ValueError("kid must not be empty")
    # RFC 7515 §4.1.1 alg, §4.1.4 kid, §4.1.9 typ; RFC 7519 §5.1 suggests typ "JWT".
    header: dict[str, str] = {"alg": alg.value, "kid": kid}
    if typ is not None:
        header["typ"] = typ
    return b64url_encode_ascii(_compact_json(header, "header members"))


def encode_claims(claims: Mapping[str, object]) -> bytes:
    """Return ``claims`` as compact UTF-8 JSON, in the mapping's own order: the JWT payload.

    Raises ``ValueError`` for NaN/Infinity or lone surrogates, ``TypeError`` for values that are
    not JSON (those are the caller's bug, not bad input).
    """
    return _compact_json(claims, "claims")


def signing_input(encoded_header: bytes, payload: bytes) -> bytes:
    """Return the JWS signing input ``encoded_header || '.' || BASE64URL(payload)``.

    RFC 7515 §5.1 step 8: this ASCII string is what the key signs.
    """
    return encoded_header + b"." + b64url_encode_ascii(payload)


def compact(signing_input: bytes, signature: bytes) -> str:
    """Return the JWS Compact Serialization ``signing_input || '.' || BASE64URL(signature)``.

    RFC 7515 §7.1. ``signature`` must already be in JOSE form (see the module docstring).
    """
    return (signing_input + b"." + b64url_encode_ascii(signature)).decode("ascii")


def der_to_raw_ecdsa(der: bytes, size: int) -> bytes:
    """Convert a DER ``ECDSA-Sig-Value`` into the JOSE ``r || s`` form of ``size`` octets in all.

    ``size`` is the whole JOSE signature length: 64 for ES256 and 96 for ES384, as
    ``SPECS[alg].signature_size`` gives it (RFC 7518 §3.4: each integer is left-padded to the
    curve's octet length). Raises ``ValueError`` for malformed DER or integers that do not fit.
    """
    if size <= 0 or size % 2:
        raise ValueError(f"an r || s signature size must be positive and even, not {size}")
    r, s = decode_dss_signature(der)
    half = size // 2
    bound = 1 << (8 * half)
    if not (0 < r < bound and 0 < s < bound):
        raise ValueError(f"ECDSA r and s must be positive integers of at most {half} octets")
    return r.to_bytes(half, "big") + s.to_bytes(half, "big")


def raw_to_der_ecdsa(raw: bytes) -> bytes:
    """Convert a JOSE ``r || s`` ECDSA signature (RFC 7518 §3.4) into a DER ``ECDSA-Sig-Value``."""
    if not raw or len(raw) % 2:
        raise ValueError(f"an r || s signature has a positive, even length, not {len(raw)}")
    half = len(raw) // 2
    r = int.from_bytes(raw[:half], "big")
    s = int.from_bytes(raw[half:], "big")
    if r == 0 or s == 0:
        raise ValueError("ECDSA r and s must not be zero")
    return encode_dss_signature(r, s)
