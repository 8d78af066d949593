"""Pure JOSE pieces of the signer: algorithms, JWKs, thumbprints, compact JWS, JWKS documents.

Nothing here does I/O or reads the clock; callers pass records, ``now`` and signatures in.
"""
