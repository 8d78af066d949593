"""``sign`` callables in the wire forms attest expects, over local ``cryptography`` keys.

The service signs with the HSM; these stand in for it with the same outputs: DER for ECDSA,
PKCS#1 v1.5 or PSS (SHA-256, MGF1-SHA-256, 32-byte salt) for RSA, plain Ed25519.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest.bundle import Bundle
from attest.dsse import Envelope
from attest.keys import PublicKey, RsaPssPublicKey

Sign: TypeAlias = Callable[[bytes], bytes]
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _ec_hash(key: ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    return hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()


def message_signer(key: PrivateKey, *, pss: bool = False) -> Sign:
    """Return ``sign(message)`` in the key's one scheme (see attest.keys)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = ec.ECDSA(_ec_hash(key))
        return lambda data: key.sign(data, algorithm)
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = _PSS if pss else padding.PKCS1v15()
        return lambda data: key.sign(data, pad, hashes.SHA256())
    return key.sign


def digest_signer(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    pss: bool = False,
    algorithm: hashes.HashAlgorithm | None = None,
) -> Sign:
    """Return ``sign(digest)`` that signs prehashed, as message-signature bundles need
    (``algorithm``'s digest; SHA-256 unless given)."""
    prehashed = Prehashed(algorithm or hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return lambda digest: key.sign(digest, ec.ECDSA(prehashed))
    pad: padding.AsymmetricPadding = _PSS if pss else padding.PKCS1v15()
    return lambda digest: key.sign(digest, pad, prehashed)


def public(key: PrivateKey, *, pss: bool = False) -> PublicKey:
    """Return the public key as attest.verify wants it (PSS keys wrapped)."""
    public_key = key.public_key()
    if pss:
        assert isinstance(public_key, rsa.RSAPublicKey)
        return RsaPssPublicKey(key=public_key)
    return public_key


def tampered_envelope(
    bundle: Bundle, *, payload_type: str | None = None, payload: bytes | None = None
) -> Bundle:
    """``bundle`` with its DSSE envelope's payload type or payload changed, signature kept."""
    envelope = bundle.content
    assert isinstance(envelope, Envelope)
    changed = Envelope(
        payload_type=envelope.payload_type if payload_type is None else payload_type,
        payload=envelope.payload if payload is None else payload,
        signatures=envelope.signatures,
    )
    return Bundle(hint=bundle.hint, content=changed)
