"""Our bundles verify with node's @sigstore/verify, with keyed trust material and no logs.

``tests/interop/verify-bundle.mjs`` builds a TrustMaterial whose only key is our PEM under the
given hint, sets the tlog, CT-log and timestamp thresholds to 0 and runs ``Verifier.verify`` on
``toSignedEntity(bundle, artifact)``; it also compares the artifact with the bundle's
``messageDigest`` (message signatures) or the statement's subjects (DSSE). Exit 0 means valid.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.bundle import Bundle, dumps_bundle, sign_dsse_bundle, sign_message_bundle
from attest.intoto import PAYLOAD_TYPE, Statement, Subject, dumps_statement
from tests.attest.signers import digest_signer, message_signer, tampered_envelope

INTEROP = Path(__file__).resolve().parent.parent / "interop"
_ARTIFACT = b"acme-1.0.tar.gz\n" * 100
_DIGEST = hashlib.sha256(_ARTIFACT).digest()
_OTHER = b"a different artifact"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    """Runs verify-bundle.mjs on files in one temporary directory."""

    directory: Path

    def verify(
        self,
        bundle: Bundle | bytes,
        key: ec.EllipticCurvePrivateKey,
        *,
        hint: str = "kid-1",
        artifact: bytes | None = None,
        digest: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        node = shutil.which("node")
        assert node is not None, "node is required (scripts/setup installs it)"
        bundle_path = self.directory / "bundle.json"
        bundle_path.write_bytes(bundle if isinstance(bundle, bytes) else dumps_bundle(bundle))
        key_path = self.directory / "key.pem"
        key_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        args = [node, str(INTEROP / "verify-bundle.mjs"), str(bundle_path), str(key_path), hint]
        if artifact is not None:
            artifact_path = self.directory / "artifact"
            artifact_path.write_bytes(artifact)
            args += ["--artifact", str(artifact_path)]
        if digest is not None:
            args += ["--digest", digest]
        return subprocess.run(
            args, cwd=INTEROP, capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture
def node(tmp_path: Path) -> _Node:
    """The node verifier, working in this test's temporary directory."""
    assert (INTEROP / "node_modules" / "@sigstore" / "verify").is_dir(), (
        "run npm ci in tests/interop"
    )
    return _Node(directory=tmp_path)


def _statement(sha256: bytes = _DIGEST, name: str = "acme-1.0.tar.gz") -> bytes:
    return dumps_statement(
        Statement(
            subjects=(Subject(name=name, sha256=sha256.hex()),),
            predicate_type="https://example.com/predicate/v1",
            predicate={},
        )
    )


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def _refused(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 1, result.stdout
    assert reason in result.stderr


def test_message_signature_bundle_verifies(node: _Node, p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="kid-1", sign=digest_signer(p256))

    _ok(node.verify(bundle, p256, artifact=_ARTIFACT))


def test_dsse_bundle_verifies(node: _Node, p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))

    _ok(node.verify(bundle, p256, artifact=_ARTIFACT))


def test_message_signature_for_another_artifact_fails(
    node: _Node, p256: ec.EllipticCurvePrivateKey
) -> None:
    bundle = sign_message_bundle(_DIGEST, hint="kid-1", sign=digest_signer(p256))

    _refused(node.verify(bundle, p256, artifact=_OTHER), "is not the artifact's sha256")


def test_changed_message_digest_fails_the_signature(
    node: _Node, p256: ec.EllipticCurvePrivateKey
) -> None:
    """The digest is rewritten to match another artifact: @sigstore/verify's check fails."""
    document = json.loads(
        dumps_bundle(sign_message_bundle(_DIGEST, hint="kid-1", sign=digest_signer(p256)))
    )
    document["messageSignature"]["messageDigest"]["digest"] = base64.b64encode(
        hashlib.sha256(_OTHER).digest()
    ).decode()

    _refused(node.verify(json.dumps(document).encode(), p256, artifact=_OTHER), "SIGNATURE_ERROR")


def test_changed_payload_type_fails(node: _Node, p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))

    result = node.verify(tampered_envelope(bundle, payload_type="application/json"), p256)

    _refused(result, "SIGNATURE_ERROR")


def test_changed_subject_fails(node: _Node, p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))

    result = node.verify(tampered_envelope(bundle, payload=_statement(name="evil.tar.gz")), p256)

    _refused(result, "SIGNATURE_ERROR")


def test_statement_about_another_artifact_fails(
    node: _Node, p256: ec.EllipticCurvePrivateKey
) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))

    result = node.verify(bundle, p256, digest=hashlib.sha256(_OTHER).hexdigest())

    _refused(result, "no subject has sha256")


@pytest.mark.parametrize("kind", ["message", "dsse"])
def test_wrong_key_fails(
    kind: str,
    node: _Node,
    p256: ec.EllipticCurvePrivateKey,
    other_p256: ec.EllipticCurvePrivateKey,
) -> None:
    bundle = (
        sign_message_bundle(_DIGEST, hint="kid-1", sign=digest_signer(p256))
        if kind == "message"
        else sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))
    )

    _refused(node.verify(bundle, other_p256, artifact=_ARTIFACT), "SIGNATURE_ERROR")


def test_unknown_hint_fails(node: _Node, p256: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_dsse_bundle(PAYLOAD_TYPE, _statement(), hint="kid-1", sign=message_signer(p256))

    _refused(node.verify(bundle, p256, hint="kid-2"), "key not found: kid-1")
