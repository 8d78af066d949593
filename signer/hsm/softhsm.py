"""SoftHSM2 token provisioning: a private config and an initialised token inside one directory.

Used by ``signer init`` for single-node setups and by the tests, which need a real token. SoftHSM
reads ``SOFTHSM2_CONF`` once, at ``C_Initialize``; whoever loads the module must export the path
returned here before doing so (this module never touches the environment of its own process).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from signer.errors import HsmError, HsmUnavailable
from signer.newfiles import create_file

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# Where distributions install the module: Debian/Ubuntu, Debian multiarch, source builds.
MODULE_CANDIDATES: tuple[str, ...] = (
    DEFAULT_MODULE,
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
)

_INIT_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftHsmToken:
    """A provisioned SoftHSM2 token and the config file that makes it visible."""

    conf_path: Path  # export as SOFTHSM2_CONF before the module is loaded
    token_dir: Path
    label: str
    # Kept out of repr() so the PINs never reach logs or test failure output.
    pin: str = field(repr=False)
    so_pin: str = field(repr=False)


def find_module() -> str:
    """Return the path of the installed SoftHSM2 PKCS#11 module, or raise ``HsmUnavailable``."""
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise HsmUnavailable(
        "SoftHSM2 PKCS#11 module not found (looked in " + ", ".join(MODULE_CANDIDATES) + ")"
    )


def provision_token(
    directory: Path,
    label: str,
    *,
    pin: str | None = None,
    so_pin: str | None = None,
    module: str | None = None,
) -> SoftHsmToken:
    """Write ``directory/softhsm2.conf``, create ``directory/tokens`` and initialise a token there.

    PINs are generated with ``secrets`` unless given. They reach the token through a child
    process's stdin (``signer.hsm.tokeninit``), never through a command line, which other local
    users can read while it runs. ``module`` is SoftHSM2's PKCS#11 module (``find_module()``
    unless given). Refuses a directory that already has a ``softhsm2.conf``, so that
    provisioning twice never leaves two tokens with one label.
    """
    directory = directory.resolve()
    conf_path = directory / "softhsm2.conf"
    token_dir = directory / "tokens"
    pin = pin if pin is not None else secrets.token_hex(16)
    so_pin = so_pin if so_pin is not None else secrets.token_hex(16)
    module = module if module is not None else find_module()
    if conf_path.exists():
        raise HsmError(f"{conf_path} already exists; refusing to provision a second token")

    directory.mkdir(parents=True, exist_ok=True)
    token_dir.mkdir(mode=0o700, exist_ok=True)
    token_dir.chmod(0o700)  # mkdir's mode is filtered by the umask
    create_file(
        conf_path,
        f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n",
        mode=0o644,
    )
    _run_token_init(conf_path, module, label, pin=pin, so_pin=so_pin)
    return SoftHsmToken(
        conf_path=conf_path, token_dir=token_dir, label=label, pin=pin, so_pin=so_pin
    )


def token_init_command(module: str, label: str) -> list[str]:
    """The child process that initialises the token: its arguments carry no PIN."""
    return [sys.executable, "-m", "signer.hsm.tokeninit", "--module", module, "--label", label]


def _run_token_init(conf_path: Path, module: str, label: str, *, pin: str, so_pin: str) -> None:
    env = {**os.environ, "SOFTHSM2_CONF": str(conf_path)}
    try:
        result = subprocess.run(  # noqa: S603 -- our own module, fixed arguments
            token_init_command(module, label),
            input=json.dumps({"pin": pin, "so_pin": so_pin}),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=_INIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HsmError(f"could not initialise the token: {type(exc).__name__}") from None
    if result.returncode != 0:
        output = _redact(result.stderr.strip() or result.stdout.strip(), pin, so_pin)
        raise HsmError(f"initialising token {label!r} failed: {output}")


def _redact(text: str, *secrets_: str) -> str:
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text
