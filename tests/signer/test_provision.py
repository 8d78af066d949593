"""``signer init`` writes only into a directory of its own, and never through a symlink."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.errors import ConfigError
from signer.provision import init_directory


def test_init_leaves_the_directory_and_every_file_it_wrote_private(tmp_path: Path) -> None:
    made = init_directory(tmp_path / "dev", port=18700)
    directory = made.config_path.parent
    assert directory.stat().st_mode & 0o777 == 0o700
    for name in ("signer.toml", "credentials.json", "hsm-pin", "hsm-so-pin"):
        assert (directory / name).stat().st_mode & 0o077 == 0, name


def test_init_refuses_a_directory_other_users_can_write(tmp_path: Path) -> None:
    """Whoever can write there could swap signer.toml for one with their own principal."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by other users"):
        init_directory(shared, port=18700)
    assert list(shared.iterdir()) == []


def test_init_refuses_a_symlink_planted_where_it_would_write(tmp_path: Path) -> None:
    directory, elsewhere = tmp_path / "dev", tmp_path / "elsewhere"
    directory.mkdir(mode=0o700)
    elsewhere.mkdir()
    (directory / "signer.toml").symlink_to(elsewhere / "written-through-the-link.toml")
    with pytest.raises(ConfigError, match="already holds a signer setup"):
        init_directory(directory, port=18700)
    assert list(elsewhere.iterdir()) == []
