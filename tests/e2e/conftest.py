"""One ``signer serve`` process per test session, on its own SoftHSM token and SQLite file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Setup, SignerProcess

# A second principal that may sign on every ring, and one ring per algorithm.
MULTI_TOKEN = "sgn_e2e-multi-ring-token"
LIMITED_TOKEN = "sgn_e2e-rate-limited-token"
ALG_RINGS = {"es384": "ES384", "rs256": "RS256", "ps256": "PS256", "eddsa": "EdDSA"}
# Code signing (tests/e2e/test_codesign.py): profiles and principals beside `signer init`'s.
RACE_PROFILE = "race"
STRICT_PROFILE = "strict"
APPROVER3_TOKEN = "sgn_e2e-third-release-approver"
OUTSIDER_TOKEN = "sgn_e2e-requester-outside-the-profile"
CODESIGN_PRINCIPALS = [
    ("approver3", APPROVER3_TOKEN, ["sign:approve:race"]),
    ("outsider", OUTSIDER_TOKEN, ["sign:request:*"]),
]


def _extra_config() -> str:
    parts = [
        "\n[[principals]]",
        'name = "multi"',
        f'token_sha256 = "{hashlib.sha256(MULTI_TOKEN.encode()).hexdigest()}"',
        'permissions = ["jwt:sign:*"]',
        "",
        "[[principals]]",
        'name = "limited"',
        f'token_sha256 = "{hashlib.sha256(LIMITED_TOKEN.encode()).hexdigest()}"',
        'permissions = ["jwt:sign:default"]',
        'rate_limit = "3/m"',
    ]
    parts += _codesign_config()
    for name, alg in ALG_RINGS.items():
        parts += [
            "",
            "[[rings]]",
            f'name = "{name}"',
            f'alg = "{alg}"',
            'rotation_period = "30d"',
            'prepublish = "2d"',
            'token_max_ttl = "10m"',
        ]
    return "\n".join(parts) + "\n"


def _codesign_config() -> list[str]:
    """Beside `signer init`'s ``release`` profile: a third approver so final votes can race,
    a strict profile, and principals that may not request on it."""
    parts: list[str] = []
    for name, token, permissions in CODESIGN_PRINCIPALS:
        parts += [
            "",
            "[[principals]]",
            f'name = "{name}"',
            f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"',
            f"permissions = {json.dumps(permissions)}",
        ]
    parts += [
        "",
        "[[groups]]",
        'name = "racers"',
        'members = ["approver1", "approver2", "approver3"]',
        "",
        "[[profiles]]",
        f'name = "{RACE_PROFILE}"',
        'ring = "codesign"',
        'requesters = ["ci"]',
        'approvers = "racers"',
        "approvals_required = 2",
        'subjects = ["*"]',
        "predicate_types = []",
        "",
        "[[profiles]]",
        f'name = "{STRICT_PROFILE}"',
        'ring = "codesign"',
        'requesters = ["ci"]',
        'approvers = "release-managers"',
        "approvals_required = 2",
        'subjects = ["registry.example.com/acme/*", "acme-*.tar.gz"]',
        'predicate_types = ["https://slsa.dev/provenance/v1"]',
        "max_subjects = 2",
    ]
    return parts


@pytest.fixture(scope="session")
def signer_setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A directory made by ``signer init`` plus a ring per algorithm."""
    return Setup.create(tmp_path_factory.mktemp("signer") / "dev", _extra_config())


@pytest.fixture(scope="session")
def signer(signer_setup: Setup) -> Iterator[SignerProcess]:
    """The shared running signer."""
    server = SignerProcess.start(signer_setup)
    yield server
    server.stop()


@pytest.fixture
def fresh_setup(tmp_path: Path) -> Setup:
    """A setup of its own, for tests that stop, kill or restart the server."""
    return Setup.create(tmp_path / "own")
