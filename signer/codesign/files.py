"""The files ``signer sign`` and ``signer verify`` read: artifacts to hash, keys, bundles, JSON.

Every failure is a one-line ``ConfigError`` naming the option and the file (the CLI exits 2),
never a traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from signer.errors import ConfigError

CHUNK = 1 << 20  # artifacts can be large: hash them a MiB at a time


def sha256_file(path: Path, option: str) -> bytes:
    """The SHA-256 digest of the file at ``path`` (``option`` names it in errors)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"{option} {str(path)!r}: {exc.strerror or exc}") from None
    return digest.digest()


def read_bytes(path: Path, option: str) -> bytes:
    """The contents of ``path``."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {str(path)!r}: {exc.strerror or exc}") from None


def parse_json(data: bytes, what: str) -> Any:
    """``data`` as JSON; ``what`` (an option and file, or a URL) names it in errors."""
    try:
        return json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise ConfigError(f"{what} is not JSON: {exc}") from None


def read_json(path: Path, option: str) -> Any:
    """The JSON document in ``path``."""
    return parse_json(read_bytes(path, option), f"{option} {str(path)!r}")
