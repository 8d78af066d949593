"""Files that hold secrets: created exclusively, never through a symlink, with the mode asked
for; and read only when no one else may read them.

``Path.write_text`` opens with ``O_CREAT | O_TRUNC``: it follows a symlink planted at the path
and rewrites a file someone else put there. What ``signer init`` writes (PINs, tokens, the
config that lists principals) is created here instead, or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from signer.errors import ConfigError


def create_file(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Create ``path`` holding ``text`` with ``mode`` (narrowed by the umask, never widened);
    ``ConfigError`` if anything, a dangling symlink included, is already there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to replace it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def check_private_file(path: Path, what: str) -> None:
    """``ConfigError`` if other users may read or write ``path`` (a PIN, a token): the way ssh
    treats a private key, refuse rather than use a secret that may already be someone else's."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(
            f"{what}: {path} can be read or written by other users (mode {mode & 0o777:o}); "
            "chmod 600 it"
        )
