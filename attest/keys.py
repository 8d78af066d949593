"""Public keys this package verifies with, and the one signature scheme each implies.

A verifier must not let the signature pick its own algorithm, so each key type maps to exactly one
scheme, matching what the signer's HSM produces (DESIGN "Key custody"):

============================  ================================================================
key                           scheme
============================  ================================================================
ECDSA P-256                   ECDSA with SHA-256, DER ``ECDSA-Sig-Value`` (FIPS 186-5, SEC 1)
ECDSA P-384                   ECDSA with SHA-384, DER
RSA (``rsa.RSAPublicKey``)    RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2)
:class:`RsaPssPublicKey`      RSASSA-PSS, SHA-256, MGF1-SHA-256, salt = hash length (RFC 8017 §8.1)
Ed25519                       PureEdDSA (RFC 8032 §5.1)
============================  ================================================================

RSA keys shorter than 2048 bits and other curves are refused. Message-signature bundles carry a
digest, not the artifact, so they verify the digest *prehashed* (same result as verifying the
artifact); Ed25519 has no prehashed form in Sigstore, so it cannot verify those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest.errors import VerificationError

__all__ = ["PublicKey", "RsaPssPublicKey", "verify_digest_signature", "verify_message_signature"]

_MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class RsaPssPublicKey:
    """An RSA public key that verifies RSASSA-PSS signatures instead of PKCS#1 v1.5."""

    key: rsa.RSAPublicKey


PublicKey: TypeAlias = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | RsaPssPublicKey | ed25519.Ed25519PublicKey
)


def verify_message_signature(key: PublicKey, data: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is ``key``'s signature over ``data`` (its one scheme).

    Raises :class:`VerificationError` for a key type, curve or size this package refuses.
    """
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_curve_hash(key)))
        elif isinstance(key, RsaPssPublicKey):
            _check_rsa(key.key).verify(signature, data, _pss(hashes.SHA256()), hashes.SHA256())
        elif isinstance(key, rsa.RSAPublicKey):
            _check_rsa(key).verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise VerificationError(f"unsupported public key type {type(key).__name__}")
    except InvalidSignature:
        return False
    return True


def verify_digest_signature(
    key: PublicKey, digest: bytes, algorithm: hashes.HashAlgorithm, signature: bytes
) -> bool:
    """Return whether ``signature`` is ``key``'s signature over a message hashing to ``digest``.

    ``algorithm`` is the hash that produced ``digest``. Raises :class:`VerificationError` for
    Ed25519 keys, which sign messages and not digests, and for refused keys.
    """
    if len(digest) != algorithm.digest_size:
        raise VerificationError(
            f"a {algorithm.name} digest is {algorithm.digest_size} bytes, not {len(digest)}"
        )
    # Each key verifies with one hash only (the curve's, or SHA-256 for RSA): otherwise ECDSA's
    # truncation would let a P-256 key "verify" a SHA-384 digest that merely starts with the
    # right 32 bytes, and the digest a bundle names would be malleable.
    expected = _curve_hash(key) if isinstance(key, ec.EllipticCurvePublicKey) else hashes.SHA256()
    if algorithm.name != expected.name and not isinstance(key, ed25519.Ed25519PublicKey):
        raise VerificationError(
            f"this key verifies {expected.name.upper()} digests, not {algorithm.name.upper()}"
        )
    prehashed = Prehashed(algorithm)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(prehashed))
        elif isinstance(key, RsaPssPublicKey):
            _check_rsa(key.key).verify(signature, digest, _pss(algorithm), prehashed)
        elif isinstance(key, rsa.RSAPublicKey):
            _check_rsa(key).verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            raise VerificationError(
                "an Ed25519 key cannot verify a signature from a digest; it signs whole messages"
            )
        else:
            raise VerificationError(f"unsupported public key type {type(key).__name__}")
    except InvalidSignature:
        return False
    return True


def _curve_hash(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    # The curve fixes the hash (ES256 / ES384 pairing, RFC 7518 §3.4; Sigstore
    # PKIX_ECDSA_P256_SHA_256, PKIX_ECDSA_P384_SHA_384).
    if isinstance(key.curve, ec.SECP256R1):
        return hashes.SHA256()
    if isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    raise VerificationError(f"unsupported ECDSA curve {key.curve.name}; expected P-256 or P-384")


def _check_rsa(key: rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    if key.key_size < _MIN_RSA_BITS:
        raise VerificationError(
            f"RSA keys need at least {_MIN_RSA_BITS} bits; this one has {key.key_size}"
        )
    return key


def _pss(algorithm: hashes.HashAlgorithm) -> padding.PSS:
    # RFC 8017 §9.1 with the parameters RFC 7518 §3.5 (PS256) fixes: MGF1 with the same hash, a
    # salt as long as the hash output.
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
