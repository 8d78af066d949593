"""One key, one purpose: a ring that signs artifacts never signs JWTs (config and runtime)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from signer.errors import ConfigError
from signer.settings import Settings, load_settings

CONFIG = """
[server]
default_ring = "{default_ring}"

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
alg = "ES256"
rotation_period = "90d"
prepublish = "7d"
token_max_ttl = "5m"

[[principals]]
name = "idp"
token_sha256 = "{idp_digest}"
permissions = ["{idp_permission}"]

[[principals]]
name = "ci"
token_sha256 = "{ci_digest}"
permissions = ["sign:request:release"]

[[principals]]
name = "ann"
token_sha256 = "{ann_digest}"
permissions = ["sign:approve:release"]

[[groups]]
name = "managers"
members = ["ann"]

[[profiles]]
name = "release"
ring = "codesign"
requesters = ["ci"]
approvers = "managers"
approvals_required = 1
subjects = ["*"]
"""


NAMES = ("idp", "ci", "ann")


def load(tmp_path: Path, *, default_ring: str = "default", idp: str = "jwt:sign:*") -> Settings:
    path = tmp_path / "signer.toml"
    digests = {f"{name}_digest": hashlib.sha256(name.encode()).hexdigest() for name in NAMES}
    path.write_text(CONFIG.format(default_ring=default_ring, idp_permission=idp, **digests))
    return load_settings(path, environ={"PIN": "1234"})


def test_a_wildcard_jwt_grant_loads_and_covers_jwt_rings_only(tmp_path: Path) -> None:
    """``jwt:sign:*`` is the usual IdP grant; the service refuses artifact rings at run time."""
    assert load(tmp_path).profiles[0].ring == "codesign"


def test_an_explicit_jwt_grant_of_an_artifact_ring_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"principals\[0\].permissions: 'jwt:sign:codesign'"):
        load(tmp_path, idp="jwt:sign:codesign")


def test_an_artifact_ring_cannot_back_the_well_known_jwks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.default_ring: ring 'codesign' signs artifacts"):
        load(tmp_path, default_ring="codesign")
