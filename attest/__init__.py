"""Pure attestation formats: DSSE, in-toto, Sigstore bundles, cosign simple signing.

No I/O, no clock, nothing from :mod:`signer`: signing is injected as ``sign(bytes) -> bytes`` and
verification takes explicit trusted keys.

- :mod:`attest.dsse`: DSSE v1 PAE and JSON envelopes
- :mod:`attest.intoto`: in-toto Statement v1, SLSA Provenance v1 predicate check
- :mod:`attest.approval`: the signer's approval predicate
- :mod:`attest.simplesigning`: cosign simple-signing payloads for container images
- :mod:`attest.bundle`: Sigstore bundle v0.3, keyed form
- :mod:`attest.verify`: offline verification over explicit keys (schemes in :mod:`attest.keys`)
- :mod:`attest.errors`: ``AttestError`` and ``VerificationError``
"""
