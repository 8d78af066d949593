"""mTLS: a client certificate chained to ``client_ca`` authenticates its principal."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.server import Setup, SignerProcess

NOW = datetime.datetime.now(datetime.UTC)


@dataclass
class Issued:
    cert: Path
    key: Path


def name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    cert_path = directory / f"{stem}.pem"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert_path, key_path)


def issue(
    directory: Path,
    stem: str,
    subject: x509.Name,
    *,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    server: bool = False,
) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = ca[0].subject if ca else subject
    signing_key = ca[1] if ca else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(signing_key, hashes.SHA256())
    return write_pair(directory, stem, cert, key), cert, key


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # chained to another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = issue(directory, "ca", name("Signer test CA"), ca=None)
    server, _, _ = issue(directory, "server", name("signer"), ca=(ca_cert, ca_key), server=True)
    client, _, _ = issue(directory, "client", name("idp"), ca=(ca_cert, ca_key))
    _, other_cert, other_key = issue(directory, "other-ca", name("Other CA"), ca=None)
    stranger, _, _ = issue(directory, "stranger", name("idp"), ca=(other_cert, other_key))
    return Pki(ca=ca, server=server, client=client, stranger=stranger)


@pytest.fixture(scope="module")
def tls_signer(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignerProcess]:
    extra = """
[[principals]]
name = "idp-cert"
token_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
cert_subject = "CN=idp,O=Acme"
permissions = ["jwt:sign:default"]
"""
    setup = Setup.create(tmp_path_factory.mktemp("tls") / "signer", extra, scheme="https")
    text = setup.config.read_text().replace(
        "[server]\n",
        f'[server]\ntls_cert = "{pki.server.cert}"\ntls_key = "{pki.server.key}"\n'
        f'client_ca = "{pki.ca.cert}"\n',
        1,
    )
    setup.config.write_text(text)
    server = SignerProcess.start(setup, cafile=pki.ca.cert)
    yield server
    server.stop()


def client_context(pki: Pki, cert: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


async def post(
    server: SignerProcess, context: ssl.SSLContext, token: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(ssl=context)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            f"{server.setup.url}/v1/rings/default/jwt",
            json={"claims": {"sub": "a"}},
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json()


async def test_client_certificate_authenticates_its_principal(
    tls_signer: SignerProcess, pki: Pki
) -> None:
    status, body = await post(tls_signer, client_context(pki, pki.client))
    assert status == 200, body
    assert str(body["jwt"]).count(".") == 2


async def test_no_certificate_and_no_token_is_401(tls_signer: SignerProcess, pki: Pki) -> None:
    status, body = await post(tls_signer, client_context(pki, None))
    assert (status, body["code"]) == (401, "unauthenticated")


async def test_bearer_tokens_still_work_over_tls(tls_signer: SignerProcess, pki: Pki) -> None:
    status, _ = await post(tls_signer, client_context(pki, None), tls_signer.setup.tokens["issuer"])
    assert status == 200


async def test_certificate_from_another_ca_fails_the_handshake(
    tls_signer: SignerProcess, pki: Pki
) -> None:
    with pytest.raises(aiohttp.ClientError):
        await post(tls_signer, client_context(pki, pki.stranger))
