"""SoftHSM2 provisioning: a private config, a 0700 token directory and an initialised token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from signer.errors import HsmError
from signer.hsm.softhsm import DEFAULT_MODULE, SoftHsmToken, find_module, provision_token


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


# Logs in to a token in a process of its own: SoftHSM reads SOFTHSM2_CONF once per process.
_LOGIN = """
import sys, pkcs11
from pkcs11.exceptions import PKCS11Error
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
for kind, pin in zip(("user", "so"), sys.argv[3:5], strict=True):
    try:
        token.open(rw=True, **{kind + "_pin": pin}).close()
        print(kind, "ok")
    except PKCS11Error as exc:
        print(kind, type(exc).__name__)
"""


def logins(token: SoftHsmToken, user_pin: str, so_pin: str) -> list[str]:
    """How a login as the user and as the security officer with these PINs goes."""
    argv = [sys.executable, "-c", _LOGIN, find_module(), token.label, user_pin, so_pin]
    env = {**os.environ, "SOFTHSM2_CONF": str(token.conf_path)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_the_token_takes_its_pins_and_refuses_others(tmp_path: Path) -> None:
    token = provision_token(tmp_path, "logins", pin="user-pin-1234", so_pin="so-pin-5678")

    assert logins(token, token.pin, token.so_pin) == ["user ok", "so ok"]
    assert logins(token, token.so_pin, token.pin) == ["user PinIncorrect", "so PinIncorrect"]


def test_the_pins_reach_the_token_on_stdin_never_on_a_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other local users can read a process's arguments in /proc while it runs."""
    seen: list[tuple[list[str], str]] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append((argv, kwargs["input"]))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    token = provision_token(tmp_path, "stdin", pin="user-pin-1234", so_pin="so-pin-5678")
    monkeypatch.undo()

    ((argv, stdin),) = seen
    assert not any("pin-" in arg for arg in argv)
    assert json.loads(stdin) == {"pin": "user-pin-1234", "so_pin": "so-pin-5678"}
    assert logins(token, "user-pin-1234", "so-pin-5678") == ["user ok", "so ok"]


def test_a_module_that_does_not_load_is_a_clear_error_without_the_pins(tmp_path: Path) -> None:
    with pytest.raises(HsmError, match=r"could not load /no/such/module\.so") as caught:
        provision_token(
            tmp_path, "x", pin="user-pin-1234", so_pin="so-pin-5678", module="/no/such/module.so"
        )

    assert "user-pin-1234" not in str(caught.value)
    assert "so-pin-5678" not in str(caught.value)


@pytest.mark.parametrize("label", ["", "x" * 33, "é" * 17])
def test_a_label_the_token_cannot_hold_is_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(HsmError, match="1 to 32 bytes"):
        provision_token(tmp_path, label)


def test_find_module_returns_the_installed_module() -> None:
    assert find_module() == DEFAULT_MODULE
