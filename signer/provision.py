"""``signer init``: a working single-node setup in one directory.

Creates a SoftHSM2 token (config, token directory, PINs in 0600 files), the SQLite store, a
``signer.toml`` with a ``default`` ES256 ring for JWTs, a ``codesign`` ES256 ring and a
``release`` signing profile (``ci`` requests, ``approver1`` and ``approver2`` both approve), one
principal per role, and ``credentials.json`` holding the role tokens. Refuses to touch a
directory that already has a setup, so keys are never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from signer.errors import ConfigError
from signer.hsm.softhsm import find_module, provision_token
from signer.newfiles import create_file

TOKEN_LABEL = "signer-dev"  # noqa: S105 -- a PKCS#11 token label, not a secret
DEFAULT_PORT = 8700

# Role → permissions. Each role is one principal; names match credentials.json.
ROLES: dict[str, tuple[str, ...]] = {
    "issuer": ("jwt:sign:default",),
    "admin": ("keys:admin:*",),
    "ci": ("sign:request:*",),
    "approver1": ("sign:approve:*",),
    "approver2": ("sign:approve:*",),
    "auditor": ("audit:read",),
}
# What the dev ``release`` profile lets a pipeline attest (docs/codesign.md).
RELEASE_PREDICATE_TYPES = (
    "https://slsa.dev/provenance/v1",
    "https://sigstore.dev/cosign/sign/v1",
    "https://spdx.dev/Document",
    "https://cyclonedx.org/bom",
    "https://in-toto.io/attestation/vulns/v0.1",
)
_OWNED = (
    "signer.toml",
    "credentials.json",
    "softhsm2.conf",
    "tokens",
    "hsm-pin",
    "hsm-so-pin",
    "state.db",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitResult:
    """What ``signer init`` made."""

    config_path: Path
    credentials_path: Path
    url: str


def _config_text(*, port: int, module: str, store_path: Path, tokens: dict[str, str]) -> str:
    lines = [
        "# Written by `signer init`; see docs/configuration.md for every key.",
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        'default_ring = "default"',
        "",
        "[hsm]",
        f"module = {json.dumps(module)}",
        f'token_label = "{TOKEN_LABEL}"',
        'pin_file = "hsm-pin"',
        'softhsm2_conf = "softhsm2.conf"',
        "",
        "[store]",
        f"url = {json.dumps('sqlite://' + store_path.as_posix())}",
        "",
        "[[rings]]",
        'name = "default"',
        'alg = "ES256"',
        'rotation_period = "30d"',
        'prepublish = "2d"',
        'token_max_ttl = "1h"',
        'jwks_max_age = "1h"',
        'clock_skew = "30s"',
        'retain = "30d"',
        "",
        "[rings.approvals]",
        'destroy = { group = "key-custodians", required = 2 }',
        'reinstate = { group = "key-custodians", required = 2 }',
    ]
    lines += [
        "",
        "# Code signing: keys live long (cosign users pin them); rotation still pre-publishes.",
        "[[rings]]",
        'name = "codesign"',
        'alg = "ES256"',
        'rotation_period = "90d"',
        'prepublish = "7d"',
        'token_max_ttl = "5m"',
        'jwks_max_age = "1d"',
        'retain = "400d"',
        "",
        "[rings.approvals]",
        'destroy = { group = "key-custodians", required = 2 }',
        'reinstate = { group = "key-custodians", required = 2 }',
    ]
    for role, permissions in ROLES.items():
        digest = hashlib.sha256(tokens[role].encode()).hexdigest()
        lines += [
            "",
            "[[principals]]",
            f'name = "{role}"',
            f'token_sha256 = "{digest}"',
            f"permissions = {json.dumps(list(permissions))}",
        ]
    lines += ["", "[[groups]]", 'name = "key-custodians"', 'members = ["approver1", "approver2"]']
    lines += [
        "",
        "[[groups]]",
        'name = "release-managers"',
        'members = ["approver1", "approver2"]',
        "",
        "[[profiles]]",
        'name = "release"',
        'ring = "codesign"',
        'requesters = ["ci"]',
        'approvers = "release-managers"',
        "approvals_required = 2",
        'subjects = ["*"]',
        f"predicate_types = {json.dumps(list(RELEASE_PREDICATE_TYPES))}",
        "max_subjects = 64",
    ]
    return "\n".join(lines) + "\n"


def _check_private(directory: Path) -> None:
    """Refuse a directory someone else could write into: they could swap ``signer.toml``
    (adding a principal) or plant a file before init writes it."""
    status = directory.stat()
    if status.st_uid != os.getuid():
        raise ConfigError(
            f"{directory} belongs to another user; give signer init a directory of its own"
        )
    if status.st_mode & 0o022:
        raise ConfigError(
            f"{directory} is writable by other users (mode {status.st_mode & 0o777:o}); "
            "give signer init a directory of its own"
        )


def init_directory(directory: Path, *, port: int = DEFAULT_PORT) -> InitResult:
    """Create a single-node setup in ``directory``; refuse if one is already there."""
    directory = directory.resolve()
    # lexists: a dangling symlink counts too (an open would follow it).
    existing = [name for name in _OWNED if os.path.lexists(directory / name)]
    if existing:
        raise ConfigError(
            f"{directory} already holds a signer setup ({', '.join(existing)}); "
            "refusing to overwrite keys"
        )
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new one is private
    _check_private(directory)
    module = find_module()
    token = provision_token(directory, TOKEN_LABEL)
    create_file(directory / "hsm-pin", token.pin + "\n")
    create_file(directory / "hsm-so-pin", token.so_pin + "\n")
    tokens = {role: "sgn_" + secrets.token_urlsafe(32) for role in ROLES}
    url = f"http://127.0.0.1:{port}"
    config_path = directory / "signer.toml"
    create_file(  # 0600 too: no one else needs it, and whoever can change it can add a principal
        config_path,
        _config_text(port=port, module=module, store_path=directory / "state.db", tokens=tokens),
    )
    credentials_path = directory / "credentials.json"
    create_file(credentials_path, json.dumps({"url": url, "tokens": tokens}, indent=2) + "\n")
    return InitResult(config_path=config_path, credentials_path=credentials_path, url=url)
