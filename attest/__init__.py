"""Pure attestation formats: DSSE, in-toto, Sigstore bundles, cosign simple signing."""
