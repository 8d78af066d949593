"""Signing profiles at config load: ECDSA rings only, and lists that match permissions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from signer.config_checks import blob_oracle_rings
from signer.errors import ConfigError
from signer.settings import Settings, load_settings

BASE = """
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "t"
pin_env = "PIN"

[store]
url = "sqlite://state.db"

[[rings]]
name = "default"
alg = "ES256"
rotation_period = "30d"
prepublish = "2d"
token_max_ttl = "1h"

[[rings]]
name = "codesign"
alg = "{alg}"
rotation_period = "90d"
prepublish = "7d"
token_max_ttl = "5m"
{principals}
[[groups]]
name = "managers"
members = ["ann", "bob"]

[[profiles]]
name = "release"
ring = "codesign"
requesters = {requesters}
approvers = "managers"
approvals_required = 2
subjects = {subjects}
{extra}"""


def principal(name: str, permission: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return (
        f'\n[[principals]]\nname = "{name}"\ntoken_sha256 = "{digest}"\n'
        f'permissions = ["{permission}"]\n'
    )


def load(
    tmp_path: Path,
    *,
    alg: str = "ES256",
    ci: str = "sign:request:release",
    bob: str = "sign:approve:*",
    subjects: str = '["*"]',
    requesters: str = '["ci"]',
    ann: str = "sign:approve:release",
    extra: str = "",
) -> Settings:
    principals = principal("ci", ci) + principal("ann", ann)
    principals += principal("bob", bob)
    path = tmp_path / "signer.toml"
    path.write_text(
        BASE.format(
            alg=alg, principals=principals, subjects=subjects, requesters=requesters, extra=extra
        )
    )
    return load_settings(path, environ={"PIN": "1234"})


def test_a_valid_profile_loads(tmp_path: Path) -> None:
    (profile,) = load(tmp_path).profiles
    assert (profile.ring, profile.requesters, profile.max_subjects) == ("codesign", ("ci",), 64)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA"])
def test_a_profile_on_a_non_ecdsa_ring_is_refused(tmp_path: Path, alg: str) -> None:
    with pytest.raises(ConfigError, match=f"signs with {alg}; a signing profile needs an ECDSA"):
        load(tmp_path, alg=alg)


def test_a_profile_on_an_es384_ring_loads(tmp_path: Path) -> None:
    assert load(tmp_path, alg="ES384").profiles


def test_a_requester_without_the_permission_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'ci' lacks permission 'sign:request:release'"):
        load(tmp_path, ci="sign:request:other")


def test_an_approver_without_the_permission_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="member 'bob' of 'managers' lacks permission"):
        load(tmp_path, bob="audit:read")


def test_a_profile_without_subject_patterns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one subject pattern"):
        load(tmp_path, subjects="[]")


def test_a_requester_in_the_approver_group_must_leave_enough_other_approvers(
    tmp_path: Path,
) -> None:
    """ann may not approve her own request, so bob alone can never give two approvals."""
    with pytest.raises(ConfigError, match="2 approvals can never be reached for requester 'ann'"):
        load(tmp_path, requesters='["ci", "ann"]', ann='sign:request:*", "sign:approve:*')


@pytest.mark.parametrize("kinds", ['["blob", "sbom"]', "[]", '["blob", "blob"]', '"blob"'])
def test_kinds_outside_the_three_or_repeated_are_refused(tmp_path: Path, kinds: str) -> None:
    with pytest.raises(ConfigError, match=r"profiles\[0\]\.kinds"):
        load(tmp_path, extra=f"kinds = {kinds}\n")


def test_a_ring_signing_blobs_is_named_for_a_warning(tmp_path: Path) -> None:
    """Blob digests are the requester's, and the same key signs every request's approval
    attestation (DSSE): a ring that signs blobs signs statements nobody approved."""
    assert blob_oracle_rings(load(tmp_path)) == ["codesign"]  # every kind, by default
    assert blob_oracle_rings(load(tmp_path, extra='kinds = ["blob"]\n')) == ["codesign"]
    split = load(tmp_path, extra='kinds = ["container", "attestation"]\n')
    assert split.profiles[0].kinds == ("container", "attestation")
    assert blob_oracle_rings(split) == []
    assert blob_oracle_rings(load(tmp_path, alg="ES384")) == []  # refuses blobs anyway
