"""Artifact signing: approved signing requests, turned into Sigstore bundles and cosign signatures.

- :mod:`signer.codesign.records`: the ``SigningRequest`` record and its states (pure)
- :mod:`signer.codesign.requests`: parse a request body against a signing profile (pure)
- :mod:`signer.codesign.outputs`: what gets signed, and the outputs built from the signatures (pure)
- :mod:`signer.codesign.shell`: wiring to the store, the approvals engine, the HSM and the audit log
- :mod:`signer.codesign.http`: the ``/v1/signing-requests`` endpoints and the ring key PEMs
- :mod:`signer.codesign.cli`: ``signer sign request|status|fetch`` and ``signer verify``
"""
