"""The JOSE signature algorithms the signer offers (RFC 7518 §3, RFC 8037, RFC 9864)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Alg(enum.StrEnum):
    """A JWS ``alg`` value that a ring can be configured with."""

    ES256 = "ES256"
    ES384 = "ES384"
    RS256 = "RS256"
    PS256 = "PS256"
    EDDSA = "EdDSA"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlgSpec:
    """How one algorithm maps onto key types, curves and hashes."""

    alg: Alg
    kty: str  # RFC 7517 "kty" of the public key
    crv: str | None  # RFC 7518 §6.2.1.1 / RFC 8037 §2 curve name
    hash_name: str | None  # host-side digest for ECDSA; None where the mechanism hashes itself
    signature_size: int | None  # fixed r||s (or Ed25519) length; None for RSA (modulus length)


SPECS: dict[Alg, AlgSpec] = {
    Alg.ES256: AlgSpec(alg=Alg.ES256, kty="EC", crv="P-256", hash_name="sha256", signature_size=64),
    Alg.ES384: AlgSpec(alg=Alg.ES384, kty="EC", crv="P-384", hash_name="sha384", signature_size=96),
    Alg.RS256: AlgSpec(alg=Alg.RS256, kty="RSA", crv=None, hash_name=None, signature_size=None),
    Alg.PS256: AlgSpec(alg=Alg.PS256, kty="RSA", crv=None, hash_name=None, signature_size=None),
    Alg.EDDSA: AlgSpec(alg=Alg.EDDSA, kty="OKP", crv="Ed25519", hash_name=None, signature_size=64),
}

# RFC 9864 registers "Ed25519" as a fully-specified alternative to "EdDSA" for the same keys.
ALIASES: dict[str, Alg] = {"Ed25519": Alg.EDDSA}


def parse_alg(value: str) -> Alg:
    """Return the algorithm named by ``value`` (accepting RFC 9864 ``Ed25519``)."""
    if value in ALIASES:
        return ALIASES[value]
    try:
        return Alg(value)
    except ValueError:
        allowed = ", ".join([a.value for a in Alg] + list(ALIASES))
        raise ValueError(f"unsupported alg {value!r}; expected one of {allowed}") from None
