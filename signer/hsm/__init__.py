"""Key custody: the ``KeyBackend`` port and its PKCS#11 adapter."""

from signer.hsm.base import KeyBackend, KeyProof, KeyRef

__all__ = ["KeyBackend", "KeyProof", "KeyRef"]
