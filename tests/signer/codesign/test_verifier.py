"""``signer verify``: exit 0 verified, 1 not verified, 2 bad usage or unreadable input."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer.cli import main
from signer.codesign.records import Kind
from signer.codesign.verifier import check_jwks_url
from signer.errors import ConfigError
from tests.signer.codesign.conftest import DIGEST, make_request, signed_outputs


@pytest.fixture
def container(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> dict[str, Path]:
    """A container's simple-signing payload, signature, DSSE envelope and key, as files."""
    outputs = signed_outputs(p256, make_request(Kind.CONTAINER))
    simple = outputs["simple_signing"]
    files = {
        "payload": tmp_path / "simple-signing.json",
        "signature": tmp_path / "simple-signing.sig",
        "envelope": tmp_path / "envelope.json",
        "key": tmp_path / "key.pem",
    }
    files["payload"].write_bytes(base64.b64decode(simple["payload"]))
    files["signature"].write_text(simple["signature"] + "\n")
    files["envelope"].write_text(json.dumps(outputs["bundle"]["dsseEnvelope"]))
    files["key"].write_bytes(
        p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return files


def verify_simple(files: dict[str, Path], *trust: str) -> int:
    return main(
        ["verify", "--simple-signing", str(files["payload"]), "--signature",
         str(files["signature"]), *trust]
    )  # fmt: skip


def test_a_simple_signing_signature_verifies(container: dict[str, Path]) -> None:
    assert verify_simple(container, "--key", str(container["key"])) == 0


def test_a_predicate_type_with_simple_signing_is_bad_usage(container: dict[str, Path]) -> None:
    """A simple-signing payload has no statement: the check cannot be made, so say so."""
    assert verify_simple(container, "--key", str(container["key"])) == 0
    types = ["--predicate-type", "https://slsa.dev/provenance/v1"]
    assert verify_simple(container, "--key", str(container["key"]), *types) == 2


def test_a_url_safe_base64_signature_verifies(container: dict[str, Path]) -> None:
    """attest.b64 accepts either alphabet, as DSSE requires of verifiers."""
    der = base64.b64decode(container["signature"].read_text())
    container["signature"].write_text(base64.urlsafe_b64encode(der).decode().rstrip("="))
    assert verify_simple(container, "--key", str(container["key"])) == 0


def test_a_jwks_over_plain_http_is_refused(
    container: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_simple(container, "--jwks", "http://keys.example.com/jwks.json") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "must be fetched over https" in line


@pytest.mark.parametrize(
    "url",
    ["https://keys.example.com/jwks.json", "http://127.0.0.1:8700/j", "http://[::1]/j",
     "http://localhost/j"],
)  # fmt: skip
def test_https_or_loopback_http_jwks_urls_are_allowed(url: str) -> None:
    assert check_jwks_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.2.example/j", "ftp://127.0.0.1/j", "https:///j", "file:///etc/j"]
)
def test_other_jwks_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="https"):
        check_jwks_url(url)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_jwks_exits_2_in_one_line(
    container: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/jwks.json"
    assert verify_simple(container, "--jwks", url) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "cannot reach" in line


@pytest.fixture
def not_json_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>not a JWKS</html>")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def test_a_jwks_that_is_not_json_exits_2_in_one_line(
    container: dict[str, Path], not_json_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_simple(container, "--jwks", not_json_server) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "is not JSON" in line


def test_a_missing_key_file_exits_2_in_one_line(
    container: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_simple(container, "--key", str(tmp_path / "missing.pem")) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "missing.pem" in line


def test_a_bundle_that_is_not_json_exits_2(
    container: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text("{not json")
    assert main(["verify", "--bundle", str(bundle), "--key", str(container["key"])]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "--bundle" in line


def test_an_artifact_with_a_non_in_toto_payload_type_exits_2(
    container: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Only an in-toto statement names subjects: the artifact could not be checked."""
    code = main(
        ["verify", "--envelope", str(container["envelope"]), "--key", str(container["key"]),
         "--payload-type", "text/plain", "--digest", f"sha256:{DIGEST}"]
    )  # fmt: skip
    assert code == 2
    assert "--payload-type" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("wanted", "code"),
    [
        (["https://sigstore.dev/cosign/sign/v1"], 0),
        (["https://slsa.dev/provenance/v1", "https://sigstore.dev/cosign/sign/v1"], 0),
        (["https://slsa.dev/provenance/v1"], 1),
    ],
)
def test_predicate_type_says_which_statement_is_trusted(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey, wanted: list[str], code: int
) -> None:
    """A key that signs provenance also signs other statements about the same artifact."""
    outputs = signed_outputs(p256, make_request(Kind.CONTAINER))
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(outputs["bundle"]))
    envelope = tmp_path / "envelope.json"
    envelope.write_text(json.dumps(outputs["bundle"]["dsseEnvelope"]))
    key = tmp_path / "key.pem"
    key.write_bytes(
        p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    types = [arg for uri in wanted for arg in ("--predicate-type", uri)]
    for what in (["--bundle", str(bundle)], ["--envelope", str(envelope)]):
        assert (
            main(["verify", *what, "--key", str(key), "--digest", f"sha256:{DIGEST}", *types])
            == code
        )


def test_a_message_signature_has_no_predicate_type_to_trust(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey
) -> None:
    outputs = signed_outputs(p256, make_request(Kind.BLOB))
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(outputs["bundle"]))
    key = tmp_path / "key.pem"
    key.write_bytes(
        p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    argv = ["verify", "--bundle", str(bundle), "--key", str(key), "--digest", f"sha256:{DIGEST}"]
    assert main(argv) == 0
    assert main([*argv, "--predicate-type", "https://slsa.dev/provenance/v1"]) == 1
