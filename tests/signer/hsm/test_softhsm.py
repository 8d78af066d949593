"""SoftHSM2 provisioning: a private config, a 0700 token directory and an initialised token."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from signer.errors import HsmError, HsmUnavailable
from signer.hsm.softhsm import DEFAULT_MODULE, find_module, provision_token


def show_slots(conf_path: Path) -> str:
    env = {**os.environ, "SOFTHSM2_CONF": str(conf_path)}
    result = subprocess.run(
        ["softhsm2-util", "--show-slots"], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_provisioned_token_is_initialised_under_its_own_config(tmp_path: Path) -> None:
    token = provision_token(tmp_path / "hsm", "unit-token")

    assert "unit-token" in show_slots(token.conf_path)


def test_config_points_at_an_absolute_private_token_directory(tmp_path: Path) -> None:
    token = provision_token(tmp_path / "hsm", "unit-token")
    conf = token.conf_path.read_text(encoding="utf-8")

    assert token.conf_path == (tmp_path / "hsm" / "softhsm2.conf").resolve()
    assert f"directories.tokendir = {token.token_dir}\n" in conf
    assert token.token_dir.is_absolute()
    assert "objectstore.backend = file\n" in conf
    assert "log.level = ERROR\n" in conf
    assert stat.S_IMODE(token.token_dir.stat().st_mode) == 0o700


def test_pins_are_generated_fresh_for_each_token(tmp_path: Path) -> None:
    first = provision_token(tmp_path / "a", "a")
    second = provision_token(tmp_path / "b", "b")

    assert len({first.pin, first.so_pin, second.pin, second.so_pin}) == 4
    assert len(first.pin) >= 16


def test_given_pins_are_used(tmp_path: Path) -> None:
    token = provision_token(tmp_path, "given", pin="user-pin-1234", so_pin="so-pin-5678")

    assert (token.pin, token.so_pin) == ("user-pin-1234", "so-pin-5678")


def test_repr_leaves_the_pins_out(tmp_path: Path) -> None:
    token = provision_token(tmp_path, "quiet", pin="user-pin-1234", so_pin="so-pin-5678")

    assert "user-pin-1234" not in repr(token)
    assert "so-pin-5678" not in repr(token)


def test_second_provisioning_in_one_directory_is_refused(tmp_path: Path) -> None:
    provision_token(tmp_path, "first")

    with pytest.raises(HsmError, match="already exists"):
        provision_token(tmp_path, "second")


def test_missing_softhsm2_util_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HsmUnavailable, match="no-such-softhsm2-util not found"):
        provision_token(tmp_path, "x", softhsm2_util="no-such-softhsm2-util")


def test_tool_failure_reports_stderr_without_the_pins(tmp_path: Path) -> None:
    tool = tmp_path / "failing-softhsm2-util"
    tool.write_text('#!/bin/sh\necho "cannot init token: $*" >&2\nexit 3\n', encoding="utf-8")
    tool.chmod(0o755)

    with pytest.raises(HsmError, match="exit code 3") as caught:
        provision_token(
            tmp_path / "hsm",
            "x",
            pin="user-pin-1234",
            so_pin="so-pin-5678",
            softhsm2_util=str(tool),
        )

    message = str(caught.value)
    assert "cannot init token" in message
    assert "user-pin-1234" not in message
    assert "so-pin-5678" not in message


def test_find_module_returns_the_installed_module() -> None:
    assert find_module() == DEFAULT_MODULE
