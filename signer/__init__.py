"""Signer: keeps signing keys non-exportable in an HSM and signs JWTs and artifacts with them."""
