"""Keys and ``sign`` callables for the attest tests, made locally with ``cryptography``."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


@pytest.fixture(scope="session")
def p256() -> ec.EllipticCurvePrivateKey:
    """One P-256 key for the session."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def other_p256() -> ec.EllipticCurvePrivateKey:
    """A second P-256 key: the wrong key."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def p384() -> ec.EllipticCurvePrivateKey:
    """One P-384 key for the session."""
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def rsa2048() -> rsa.RSAPrivateKey:
    """One 2048-bit RSA key for the session: RSA key generation is the slow part."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ed_key() -> ed25519.Ed25519PrivateKey:
    """One Ed25519 key for the session."""
    return ed25519.Ed25519PrivateKey.generate()
