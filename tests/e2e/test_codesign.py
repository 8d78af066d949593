"""Code signing on a live signer: request, approve, sign at quorum, verify with standard tools.

Outputs are checked by independent verifiers: node's ``@sigstore/verify`` for bundles (keyed
trust material, every threshold 0), ``securesystemslib`` for DSSE envelopes and ``cryptography``
for the simple-signing signature over the exact payload bytes. Each refuses a changed digest,
payload type, key or subject.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError

# securesystemslib.signer re-exports SSlibKey without naming it in __all__.
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

from tests.e2e.conftest import APPROVER3_TOKEN, OUTSIDER_TOKEN, RACE_PROFILE, STRICT_PROFILE
from tests.e2e.server import SignerProcess, child_env, run_cli
from tests.e2e.verifiers import INTEROP

SLSA = "https://slsa.dev/provenance/v1"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
APPROVAL = "https://signer.dev/attestation/approval/v1"
IMAGE = "registry.example.com/acme/app"
PROVENANCE = {
    "buildDefinition": {"buildType": "https://ci.example/v1", "externalParameters": {"ref": "v1"}},
    "runDetails": {"builder": {"id": "https://ci.example/runner"}},
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token(server: SignerProcess, role: str) -> str:
    extra = {"approver3": APPROVER3_TOKEN, "outsider": OUTSIDER_TOKEN}
    return extra.get(role) or server.setup.tokens[role]


def submit(server: SignerProcess, role: str = "ci", **body: Any) -> tuple[int, dict[str, Any]]:
    payload = {"profile": "release", "reason": "release 1.0", **body}
    response = server.request(
        "POST", "/v1/signing-requests", body=payload, token=token(server, role)
    )
    answer: dict[str, Any] = response.json()
    return response.status, answer


def create(server: SignerProcess, **body: Any) -> dict[str, Any]:
    status, answer = submit(server, **body)
    assert status == 201, answer
    return answer


def vote(
    server: SignerProcess, request_id: str, role: str, verb: str = "approve"
) -> tuple[int, dict[str, Any]]:
    response = server.request(
        "POST",
        f"/v1/signing-requests/{request_id}/{verb}",
        body={"comment": f"{verb} by {role}"},
        token=token(server, role),
    )
    answer: dict[str, Any] = response.json()
    return response.status, answer


def signed(server: SignerProcess, **body: Any) -> dict[str, Any]:
    """A request approved by both release managers."""
    request_id = create(server, **body)["id"]
    assert vote(server, request_id, "approver1")[0] == 200
    status, answer = vote(server, request_id, "approver2")
    assert status == 200, answer
    assert answer["state"] == "signed"
    return answer


def read(server: SignerProcess, request_id: str, role: str = "ci") -> dict[str, Any]:
    response = server.request(
        "GET", f"/v1/signing-requests/{request_id}", token=token(server, role)
    )
    assert response.status == 200, response.body
    answer: dict[str, Any] = response.json()
    return answer


def key_pem(server: SignerProcess, answer: dict[str, Any]) -> bytes:
    response = server.request("GET", answer["key_url"])
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/x-pem-file")
    return response.body


def audit_records(server: SignerProcess) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        page = server.request(
            "GET", f"/v1/audit?after={after}&limit=1000", token=server.setup.tokens["auditor"]
        ).json()
        records += page["records"]
        if "next_after" not in page:
            return records
        after = page["next_after"]


def node_verify(bundle: object, pem: bytes, hint: str, tmp_path: Path, *args: str) -> str | None:
    """None if ``@sigstore/verify`` accepts the bundle, else its complaint."""
    bundle_path = tmp_path / f"bundle-{sha256(json.dumps(bundle).encode())[:12]}.json"
    bundle_path.write_text(json.dumps(bundle))
    key_path = tmp_path / f"key-{sha256(pem)[:12]}.pem"
    key_path.write_bytes(pem)
    result = subprocess.run(
        ["node", "verify-bundle.mjs", str(bundle_path), str(key_path), hint, *args],
        cwd=INTEROP,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return None if result.returncode == 0 else result.stderr.strip() or "failed"


def other_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# --- blob ---------------------------------------------------------------------------------


def test_a_blob_bundle_verifies_with_sigstore_js_and_only_for_its_artifact(
    signer: SignerProcess, tmp_path: Path
) -> None:
    artifact = tmp_path / "acme-1.0.tar.gz"
    artifact.write_bytes(b"release bytes")
    subjects = [{"name": artifact.name, "digest": {"sha256": sha256(artifact.read_bytes())}}]
    answer = signed(signer, kind="blob", subjects=subjects)
    bundle = answer["outputs"]["bundle"]
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == answer["kid"]
    assert "messageSignature" in bundle
    pem = key_pem(signer, answer)
    kid = answer["kid"]

    assert node_verify(bundle, pem, kid, tmp_path, "--artifact", str(artifact)) is None
    changed = tmp_path / "changed.tar.gz"
    changed.write_bytes(b"release bytes, changed")
    assert node_verify(bundle, pem, kid, tmp_path, "--artifact", str(changed)) is not None
    assert node_verify(bundle, other_pem(), kid, tmp_path, "--artifact", str(artifact))
    forged = json.loads(json.dumps(bundle))
    forged["messageSignature"]["messageDigest"]["digest"] = base64.b64encode(
        hashlib.sha256(changed.read_bytes()).digest()
    ).decode()
    assert node_verify(forged, pem, kid, tmp_path, "--artifact", str(changed)) is not None


def test_no_outputs_exist_before_quorum(signer: SignerProcess) -> None:
    subjects = [{"name": "acme-2.tar.gz", "digest": {"sha256": sha256(b"2")}}]
    created = create(signer, kind="blob", subjects=subjects, change_id="CHG-2")
    assert (created["state"], created["outputs"]) == ("pending", {})
    assert created["approval"]["operation"] == "signing"
    assert created["approval"]["policy"]["required"] == 2
    status, after_one = vote(signer, created["id"], "approver1")
    assert status == 200
    assert (after_one["state"], after_one["outputs"], after_one["kid"]) == ("pending", {}, None)
    assert read(signer, created["id"])["outputs"] == {}


def test_the_approval_bundle_says_who_approved_which_digest(
    signer: SignerProcess, tmp_path: Path
) -> None:
    digest = sha256(b"approved artifact")
    answer = signed(signer, kind="blob", subjects=[{"name": "a.tgz", "digest": {"sha256": digest}}])
    approval = answer["outputs"]["approval_bundle"]
    pem = key_pem(signer, answer)
    assert node_verify(approval, pem, answer["kid"], tmp_path, "--digest", digest) is None
    assert node_verify(approval, pem, answer["kid"], tmp_path, "--digest", sha256(b"x"))
    statement = json.loads(base64.b64decode(approval["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == APPROVAL
    assert statement["subject"] == [{"name": "a.tgz", "digest": {"sha256": digest}}]
    predicate = statement["predicate"]
    assert predicate["request"]["id"] == answer["id"]
    assert predicate["requester"] == "ci"
    assert predicate["policy"] == {"required": 2, "group": "release-managers", "eligible": 2}
    assert [a["approver"] for a in predicate["approvals"]] == ["approver1", "approver2"]


# --- container ----------------------------------------------------------------------------


def test_a_container_signature_verifies_over_the_exact_payload(
    signer: SignerProcess, tmp_path: Path
) -> None:
    manifest = sha256(b"manifest")
    answer = signed(
        signer, kind="container", subjects=[{"name": IMAGE, "digest": {"sha256": manifest}}]
    )
    simple = answer["outputs"]["simple_signing"]
    payload = base64.b64decode(simple["payload"])
    signature = base64.b64decode(simple["signature"])
    key = serialization.load_pem_public_key(key_pem(signer, answer))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    critical = json.loads(payload)["critical"]
    assert critical["image"]["docker-manifest-digest"] == f"sha256:{manifest}"
    assert critical["identity"]["docker-reference"] == IMAGE

    changed = payload.replace(manifest.encode(), sha256(b"other").encode())
    with pytest.raises(InvalidSignature):
        key.verify(signature, changed, ec.ECDSA(hashes.SHA256()))
    wrong = serialization.load_pem_public_key(other_pem())
    assert isinstance(wrong, ec.EllipticCurvePublicKey)
    with pytest.raises(InvalidSignature):
        wrong.verify(signature, payload, ec.ECDSA(hashes.SHA256()))

    bundle = answer["outputs"]["bundle"]
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == COSIGN_SIGN
    pem = key_pem(signer, answer)
    assert node_verify(bundle, pem, answer["kid"], tmp_path, "--digest", manifest) is None
    assert node_verify(bundle, pem, answer["kid"], tmp_path, "--digest", sha256(b"x"))


# --- attestation --------------------------------------------------------------------------


def _sslib_key(server: SignerProcess, kid: str) -> SSlibKey:
    """The ring's key as a relying party gets it: from the JWKS, by kid."""
    jwks = server.get_json("/v1/rings/codesign/jwks.json")
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == kid]
    from jwks.jwk import public_key_from_jwk  # noqa: PLC0415

    return SSlibKey.from_crypto(public_key_from_jwk(jwk), keyid=kid)


def test_an_attestation_envelope_verifies_with_securesystemslib(
    signer: SignerProcess, tmp_path: Path
) -> None:
    digest = sha256(b"built artifact")
    answer = signed(
        signer,
        kind="attestation",
        subjects=[{"name": "acme-3.tar.gz", "digest": {"sha256": digest}}],
        predicate_type=SLSA,
        predicate=PROVENANCE,
    )
    bundle = answer["outputs"]["bundle"]
    key = _sslib_key(signer, answer["kid"])
    # from_dict consumes the signature entries it reads: give it a copy.
    envelope = SslibEnvelope.from_dict(json.loads(json.dumps(bundle["dsseEnvelope"])))
    assert set(envelope.verify([key], threshold=1)) == {answer["kid"]}
    statement = json.loads(envelope.payload)
    assert statement["predicate"] == PROVENANCE
    pem = key_pem(signer, answer)
    assert node_verify(bundle, pem, answer["kid"], tmp_path, "--digest", digest) is None


@pytest.mark.parametrize("change", ["digest", "payload-type", "subject", "key"])
def test_a_changed_attestation_fails_securesystemslib(signer: SignerProcess, change: str) -> None:
    answer = signed(
        signer,
        kind="attestation",
        subjects=[{"name": "acme-4.tar.gz", "digest": {"sha256": sha256(b"4")}}],
        predicate_type=SLSA,
        predicate=PROVENANCE,
    )
    document = json.loads(json.dumps(answer["outputs"]["bundle"]["dsseEnvelope"]))
    statement = json.loads(base64.b64decode(document["payload"]))
    if change == "digest":
        statement["subject"][0]["digest"]["sha256"] = sha256(b"other")
    elif change == "subject":
        statement["subject"][0]["name"] = "evil.tar.gz"
    elif change == "payload-type":
        document["payloadType"] = "application/vnd.other+json"
    document["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    key = _sslib_key(signer, answer["kid"])
    if change == "key":
        wrong = ec.generate_private_key(ec.SECP256R1()).public_key()
        key = SSlibKey.from_crypto(wrong, keyid=answer["kid"])
        document["payload"] = answer["outputs"]["bundle"]["dsseEnvelope"]["payload"]
    with pytest.raises(SslibVerificationError):
        SslibEnvelope.from_dict(document).verify([key], threshold=1)


# --- policy -------------------------------------------------------------------------------


def test_a_principal_outside_the_requesters_gets_403(signer: SignerProcess) -> None:
    subjects = [{"name": "acme-5.tar.gz", "digest": {"sha256": sha256(b"5")}}]
    for role in ("outsider", "approver1", "issuer"):
        status, problem = submit(signer, role, kind="blob", subjects=subjects)
        assert status == 403, (role, problem)
    for role in ("approver1", "issuer"):
        # Without a sign:request permission, whether a profile exists is not revealed either.
        status, problem = submit(signer, role, profile="no-such", kind="blob", subjects=subjects)
        assert status == 403, (role, problem)
    denials = [
        r
        for r in audit_records(signer)
        if r["action"] == "authz.deny" and r["target"] == "/v1/signing-requests"
    ]
    assert {r["actor"] for r in denials} >= {"outsider", "approver1", "issuer"}


def test_who_may_not_request_or_vote_is_refused_before_the_body_is_read(
    signer: SignerProcess,
) -> None:
    """Permission before media type and JSON (docs/api.md): each refusal is an audited 403,
    whatever the body."""
    before = len(audit_records(signer))
    issuer = token(signer, "issuer")
    for raw, content_type in ((b'{"profile": "release"}', "application/json"), (b"x", "text/x")):
        response = signer.request(
            "POST",
            "/v1/signing-requests",
            raw=raw,
            token=issuer,
            headers={"Content-Type": content_type},
        )
        assert (response.status, response.json()["code"]) == (403, "forbidden")
    subjects = [{"name": "acme-13.tar.gz", "digest": {"sha256": sha256(b"13")}}]
    request_id = create(signer, kind="blob", subjects=subjects)["id"]
    response = signer.request(
        "POST",
        f"/v1/signing-requests/{request_id}/approve",
        raw=b"[]",
        token=token(signer, "ci"),
        headers={"Content-Type": "application/json"},
    )
    assert (response.status, response.json()["code"]) == (403, "forbidden")
    denied = [
        (r["actor"], r["details"]["code"])
        for r in audit_records(signer)[before:]
        if r["action"] == "authz.deny"
    ]
    assert denied == [("issuer", "forbidden"), ("issuer", "forbidden"), ("ci", "forbidden")]


def test_a_subject_outside_the_patterns_is_a_422_naming_it(signer: SignerProcess) -> None:
    status, problem = submit(
        signer,
        profile=STRICT_PROFILE,
        kind="blob",
        subjects=[{"name": "evil.tar.gz", "digest": {"sha256": sha256(b"e")}}],
    )
    assert status == 422
    assert problem["code"] == "subject_not_allowed"
    assert "'evil.tar.gz'" in problem["detail"]
    refusal = [r for r in audit_records(signer) if r["action"] == "signing.request"][-1]
    assert (refusal["outcome"], refusal["details"]["code"]) == ("denied", "subject_not_allowed")


def test_a_predicate_type_not_allowed_is_a_422_naming_it(signer: SignerProcess) -> None:
    spdx = "https://spdx.dev/Document"
    status, problem = submit(
        signer,
        profile=STRICT_PROFILE,
        kind="attestation",
        subjects=[{"name": "acme-6.tar.gz", "digest": {"sha256": sha256(b"6")}}],
        predicate_type=spdx,
        predicate={},
    )
    assert status == 422
    assert problem["code"] == "predicate_type_not_allowed"
    assert spdx in problem["detail"]
    status, problem = submit(
        signer,
        profile=STRICT_PROFILE,
        kind="container",
        subjects=[{"name": IMAGE, "digest": {"sha256": sha256(b"m")}}],
    )
    assert (status, problem["code"]) == (422, "predicate_type_not_allowed")
    assert COSIGN_SIGN in problem["detail"]


def test_malformed_requests_are_400_naming_the_field(signer: SignerProcess) -> None:
    subjects = [{"name": "a", "digest": {"sha256": sha256(b"a")}}]
    status, problem = submit(signer, kind="blob", subjects=subjects, extra=True)
    assert (status, problem["code"], problem["field"]) == (400, "unknown_field", "extra")
    status, problem = submit(signer, kind="blob", subjects=[{"name": "a", "digest": {}}])
    assert (status, problem["field"]) == (400, "subjects")
    status, problem = submit(signer, kind="blob", subjects=subjects, reason="\ud800")
    assert (status, problem["code"], problem["field"]) == (400, "malformed_json", "reason")


def test_a_denied_request_never_gets_outputs(signer: SignerProcess) -> None:
    subjects = [{"name": "acme-7.tar.gz", "digest": {"sha256": sha256(b"7")}}]
    request_id = create(signer, kind="blob", subjects=subjects)["id"]
    status, answer = vote(signer, request_id, "approver1", "deny")
    assert (status, answer["state"], answer["outputs"]) == (200, "denied", {})
    status, problem = vote(signer, request_id, "approver2")
    assert (status, problem["code"]) == (409, "already_decided")
    assert (read(signer, request_id)["state"], read(signer, request_id)["outputs"]) == (
        "denied",
        {},
    )
    listed = signer.request(
        "GET", "/v1/signing-requests?state=denied", token=signer.setup.tokens["ci"]
    ).json()
    assert request_id in [r["id"] for r in listed["signing_requests"]]
    assert not [
        r
        for r in audit_records(signer)
        if r["action"] == "signing.sign" and r["details"]["request"] == request_id
    ]


def test_the_requester_cannot_approve_and_outsiders_cannot_read(signer: SignerProcess) -> None:
    subjects = [{"name": "acme-8.tar.gz", "digest": {"sha256": sha256(b"8")}}]
    request_id = create(signer, kind="blob", subjects=subjects)["id"]
    status, problem = vote(signer, request_id, "ci")
    assert (status, problem["code"]) == (403, "forbidden")
    response = signer.request(
        "GET", f"/v1/signing-requests/{request_id}", token=signer.setup.tokens["issuer"]
    )
    assert response.status == 404
    status, problem = vote(signer, request_id, "issuer")
    assert (status, problem["code"]) == (404, "unknown_signing_request")


def test_votes_through_the_generic_approval_route_sign_the_request(
    signer: SignerProcess,
) -> None:
    """``/v1/approvals/{id}/approve`` on a signing request's approval goes through the same
    checks as the request's own route (a principal without ``sign:approve`` is refused alike),
    and the final vote there signs."""
    subjects = [{"name": "acme-12.tar.gz", "digest": {"sha256": sha256(b"12")}}]
    created = create(signer, kind="blob", subjects=subjects)

    def generic_vote(role: str) -> tuple[int, dict[str, Any]]:
        response = signer.request(
            "POST",
            f"/v1/approvals/{created['approval_id']}/approve",
            body={"comment": "ok"},
            token=token(signer, role),
        )
        answer: dict[str, Any] = response.json()
        return response.status, answer

    assert generic_vote("auditor")[1]["code"] == vote(signer, created["id"], "auditor")[1]["code"]
    status, approval = generic_vote("approver1")
    assert status == 200, approval
    assert (approval["state"], approval["approvals"]) == ("pending", 1)
    status, approval = generic_vote("approver2")
    assert (status, approval["state"]) == (200, "executed")
    assert read(signer, created["id"])["state"] == "signed"


async def test_two_racing_final_approvals_sign_once(signer: SignerProcess) -> None:
    subjects = [{"name": "acme-9.tar.gz", "digest": {"sha256": sha256(b"9")}}]
    request_id = create(signer, profile=RACE_PROFILE, kind="blob", subjects=subjects)["id"]
    assert vote(signer, request_id, "approver1")[0] == 200
    async with aiohttp.ClientSession() as session:

        async def approve(role: str) -> tuple[int, dict[str, Any]]:
            async with session.post(
                f"{signer.setup.url}/v1/signing-requests/{request_id}/approve",
                json={"comment": "go"},
                headers={"Authorization": f"Bearer {token(signer, role)}"},
            ) as response:
                return response.status, await response.json(content_type=None)

        results = await asyncio.gather(approve("approver2"), approve("approver3"))
    statuses = sorted(status for status, _ in results)
    assert statuses in ([200, 200], [200, 409]), results
    final = read(signer, request_id)
    assert final["state"] == "signed"
    records = audit_records(signer)
    signatures = [
        r
        for r in records
        if r["action"] == "signing.sign" and r["details"]["request"] == request_id
    ]
    assert sorted(r["details"]["output"] for r in signatures) == ["approval_bundle", "bundle"]
    executed = [
        r
        for r in records
        if r["action"] == "approval.execute" and r["details"].get("request") == request_id
    ]
    assert len(executed) == 1


def test_every_request_vote_and_signature_is_audited(signer: SignerProcess) -> None:
    digest = sha256(b"audited")
    answer = signed(
        signer, kind="blob", subjects=[{"name": "acme-10.tar.gz", "digest": {"sha256": digest}}]
    )
    records = audit_records(signer)
    mine = [r for r in records if r["target"] == f"signing-request/{answer['id']}"]
    assert [r["action"] for r in mine] == ["signing.request", "signing.sign", "signing.sign"]
    assert mine[0]["actor"] == "ci"
    assert mine[0]["details"]["subjects"] == [{"name": "acme-10.tar.gz", "sha256": digest}]
    for record in mine[1:]:
        assert record["details"]["sha256"] == [digest]
        assert record["details"]["kid"] == answer["kid"]
        assert record["details"]["approvers"] == ["approver1", "approver2"]
    approval = f"approval/{answer['approval_id']}"
    votes = [r for r in records if r["target"] == approval and r["action"] == "approval.vote"]
    assert [r["actor"] for r in votes] == ["approver1", "approver2"]


# --- keys ---------------------------------------------------------------------------------


def test_the_pem_endpoint_serves_published_keys_of_the_ring_only(signer: SignerProcess) -> None:
    jwks = signer.get_json("/v1/rings/codesign/jwks.json")
    for jwk in jwks["keys"]:
        response = signer.request("GET", f"/v1/rings/codesign/keys/{jwk['kid']}.pem")
        assert response.status == 200
        key = serialization.load_pem_public_key(response.body)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        numbers = key.public_numbers()
        assert (
            base64.urlsafe_b64encode(numbers.x.to_bytes(32, "big")).rstrip(b"=").decode()
            == (jwk["x"])
        )
    kid = jwks["keys"][0]["kid"]
    assert signer.request("GET", f"/v1/rings/default/keys/{kid}.pem").status == 404
    assert signer.request("GET", "/v1/rings/codesign/keys/nope.pem").status == 404
    assert signer.request("GET", f"/v1/rings/nope/keys/{kid}.pem").status == 404


# --- CLI ----------------------------------------------------------------------------------


def credentials(server: SignerProcess) -> list[str]:
    return ["--credentials", str(server.setup.directory / "credentials.json")]


def test_cli_request_status_fetch_and_verify(signer: SignerProcess, tmp_path: Path) -> None:
    artifact = tmp_path / "acme-11.tar.gz"
    artifact.write_bytes(b"cli release")
    requested = run_cli(
        "sign", "request", "--profile", "release", "--kind", "blob", "--file", str(artifact),
        "--reason", "cli release", "--change-id", "CHG-11", *credentials(signer),
    )  # fmt: skip
    request_id = requested.stdout.split()[0]
    assert request_id.startswith("sr_")
    status = run_cli("sign", "status", request_id, *credentials(signer)).stdout
    assert "pending" in status
    assert "0/2" in status
    out = tmp_path / "out"
    fetch = subprocess.Popen(
        [sys.executable, "-m", "signer.cli", "sign", "fetch", request_id, "--out", str(out),
         "--timeout", "60", *credentials(signer)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    vote(signer, request_id, "approver1")
    vote(signer, request_id, "approver2")
    stdout, stderr = fetch.communicate(timeout=90)
    assert str(out / "bundle.sigstore.json") in stdout
    assert fetch.returncode == 0, stderr
    assert "waiting:" in stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "approval.sigstore.json",
        "bundle.sigstore.json",
        "key.pem",
    ]
    bundle, key = str(out / "bundle.sigstore.json"), str(out / "key.pem")

    ok = run_cli("verify", "--bundle", bundle, "--key", key, "--artifact", str(artifact))
    assert "message signature" in ok.stdout
    changed = tmp_path / "changed"
    changed.write_bytes(b"cli release!")
    bad = run_cli(
        "verify", "--bundle", bundle, "--key", key, "--artifact", str(changed), check=False
    )
    assert bad.returncode == 1
    assert "NOT verified" in bad.stderr
    (tmp_path / "other.pem").write_bytes(other_pem())
    bad = run_cli(
        "verify", "--bundle", bundle, "--key", str(tmp_path / "other.pem"),
        "--artifact", str(artifact), check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    jwks = f"{signer.setup.url}/v1/rings/codesign/jwks.json"
    approval = run_cli(
        "verify", "--bundle", str(out / "approval.sigstore.json"), "--jwks", jwks,
        "--artifact", str(artifact),
    )  # fmt: skip
    assert "approver1" in approval.stdout
    assert "approver2" in approval.stdout


def test_cli_container_outputs_verify_as_simple_signing(
    signer: SignerProcess, tmp_path: Path
) -> None:
    manifest = sha256(b"cli manifest")
    answer = signed(
        signer, kind="container", subjects=[{"name": IMAGE, "digest": {"sha256": manifest}}]
    )
    out = tmp_path / "out"
    run_cli("sign", "fetch", answer["id"], "--out", str(out), "--no-wait", *credentials(signer))
    payload, sig, key = (
        str(out / n) for n in ("simple-signing.json", "simple-signing.sig", "key.pem")
    )
    assert Path(payload).read_bytes() == base64.b64decode(
        answer["outputs"]["simple_signing"]["payload"]
    )
    ok = run_cli(
        "verify", "--simple-signing", payload, "--signature", sig, "--key", key,
        "--digest", f"sha256:{manifest}",
    )  # fmt: skip
    assert IMAGE in ok.stdout
    bad = run_cli(
        "verify", "--simple-signing", payload, "--signature", sig, "--key", key,
        "--digest", f"sha256:{sha256(b'other')}", check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    envelope = tmp_path / "envelope.json"
    envelope.write_text(json.dumps(answer["outputs"]["bundle"]["dsseEnvelope"]))
    ok = run_cli("verify", "--envelope", str(envelope), "--key", key, "--digest", manifest)
    assert COSIGN_SIGN in ok.stdout
    bad = run_cli(
        "verify", "--envelope", str(envelope), "--key", key, "--payload-type", "text/plain",
        check=False,
    )  # fmt: skip
    assert bad.returncode == 1


def test_cli_fetch_of_a_denied_request_fails(signer: SignerProcess, tmp_path: Path) -> None:
    subjects = [{"name": "acme-12.tar.gz", "digest": {"sha256": sha256(b"12")}}]
    request_id = create(signer, kind="blob", subjects=subjects)["id"]
    vote(signer, request_id, "approver2", "deny")
    result = run_cli(
        "sign", "fetch", request_id, "--out", str(tmp_path / "out"), *credentials(signer),
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "denied" in result.stderr
    assert not (tmp_path / "out").exists()
