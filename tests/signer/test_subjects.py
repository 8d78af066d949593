"""Client certificate subjects: a configured subject matches a certificate's exactly."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer.auth import Authenticator
from signer.errors import ConfigError, Unauthenticated
from signer.settings import PrincipalSettings, load_settings
from signer.subjects import canonical_subject, certificate_subject
from tests.signer.test_settings import BASE, write

KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(common_name: str, organization: str = "Acme") -> bytes:
    """A DER certificate for ``CN=common_name,O=organization`` (self-issued: the TLS layer's
    chain check is not what these tests are about)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.DER)


def authenticator(*subjects: str) -> Authenticator:
    return Authenticator(
        [
            PrincipalSettings(
                name=f"p{n}",
                token_sha256=hashlib.sha256(f"t{n}".encode()).digest(),
                permissions=(),
                cert_subject=canonical_subject(subject),
            )
            for n, subject in enumerate(subjects)
        ]
    )


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("CN=idp,O=Acme", "CN=idp,O=Acme"),
        ("cn=idp, o=Acme", "CN=idp,O=Acme"),
        ("CN=Smith\\, John,O=Acme", "CN=Smith\\, John,O=Acme"),
        ("CN=idp+uid=7,O=Acme", "CN=idp+UID=7,O=Acme"),
    ],
)
def test_spaces_between_attributes_and_name_case_are_forgiven(written: str, canonical: str) -> None:
    assert canonical_subject(written) == canonical


@pytest.mark.parametrize("written", ["", "garbage", "CN=idp,O=Acme,", "CN=,O=Acme"])
def test_a_subject_that_is_not_a_distinguished_name_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="subject"):
        canonical_subject(written)


def test_a_certificate_matches_its_configured_subject() -> None:
    auth = authenticator("CN=idp,O=Acme", "CN=Smith\\, John,O=Acme")
    assert auth.authenticate(None, cert_subject=certificate_subject(certificate("idp"))).name == (
        "p0"
    )
    smith = certificate_subject(certificate("Smith, John"))
    assert auth.authenticate(None, cert_subject=smith).name == "p1"


@pytest.mark.parametrize(
    ("common_name", "organization"),
    [
        ("idp\t", "Acme"),  # whitespace a trim would remove
        ("\u00a0idp", "Acme"),
        ("idp\u2003", "Acme\n"),
        ("IDP", "Acme"),  # values are case-sensitive
        ("Smith, JOHN", "Acme"),  # after an escaped comma too
        ("idp,O=Acme", "Other"),  # a comma inside a value is escaped, never a separator
    ],
)
def test_a_certificate_with_a_lookalike_subject_is_someone_else(
    common_name: str, organization: str
) -> None:
    auth = authenticator("CN=idp,O=Acme", "CN=Smith\\, John,O=Acme")
    subject = certificate_subject(certificate(common_name, organization))
    with pytest.raises(Unauthenticated):
        auth.authenticate(None, cert_subject=subject)


def with_subjects(*subjects: str) -> str:
    return BASE + "".join(
        f"""
[[principals]]
name = "mtls{n}"
token_sha256 = "{hashlib.sha256(f"m{n}".encode()).hexdigest()}"
permissions = []
cert_subject = "{subject}"
"""
        for n, subject in enumerate(subjects)
    )


def test_settings_hold_the_canonical_subject(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, with_subjects("cn=ops, O=Acme")))
    assert settings.principals[-1].cert_subject == "CN=ops,O=Acme"


def test_two_principals_with_one_subject_in_different_spellings_are_refused(
    tmp_path: Path,
) -> None:
    """Otherwise the later one would silently take the earlier one's certificate."""
    with pytest.raises(ConfigError, match="cert_subject"):
        load_settings(write(tmp_path, with_subjects("CN=ops,O=Acme", "cn=ops, O=Acme")))


def test_a_malformed_subject_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"principals\[1\]\.cert_subject"):
        load_settings(write(tmp_path, with_subjects("ops at Acme")))
