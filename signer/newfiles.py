"""Files a setup creates: exclusively, never through a symlink, with the mode asked for.

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
