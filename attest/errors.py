"""The errors of the attestation formats.

::

    ValueError
    └── AttestError           malformed or unsupported input: bad JSON, a missing member, bad base64
        └── VerificationError   well-formed, but not trusted: unknown hint, bad signature,
                                unexpected payload type, digest or subject

Both carry a precise, human-readable message naming the offending member (``"bundle:
verificationMaterial.publicKey.hint: expected a string"``). ``AttestError`` is a ``ValueError`` so
that callers that treat bad input uniformly (as :mod:`jwks` does) need no special case; the
service maps both to its own error tree at its boundary, since :mod:`attest` imports nothing from
it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["AttestError", "VerificationError"]


class AttestError(ValueError):
    """Input is malformed, or uses a feature this package does not support."""

    code: ClassVar[str] = "attestation_invalid"


class VerificationError(AttestError):
    """Input is well-formed, but its signature, signer or content does not verify."""

    code: ClassVar[str] = "attestation_unverified"
