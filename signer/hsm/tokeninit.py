"""Initialise a free token slot and set its user PIN, with the PINs read from stdin.

``softhsm2-util --init-token`` takes its PINs as arguments (it reads them from a terminal
otherwise), and a process's arguments are readable by every local user in ``/proc/<pid>/cmdline``
while it runs. So ``provision_token`` runs this module as a child process instead, with the
token's config in ``SOFTHSM2_CONF`` (read once per process, at ``C_Initialize``: hence a child)
and ``{"pin": ..., "so_pin": ...}`` as JSON on its stdin.

Run: ``python -m signer.hsm.tokeninit --module PATH --label LABEL < pins.json``. It exits 0 once
the token is initialised and its user PIN set; otherwise it prints one line naming the step that
failed (never a PIN) and exits 1.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from collections.abc import Sequence

import pkcs11
from pkcs11.constants import TokenFlag
from pkcs11.exceptions import PKCS11Error

# PKCS#11 v2.40 §3.2: CK_TOKEN_INFO.label is 32 bytes, blank-padded, not NUL-terminated.
LABEL_BYTES = 32


class TokenInitError(Exception):
    """A step of initialisation failed; the message names it and holds no PIN."""


def padded_label(label: str) -> bytes:
    """``label`` as C_InitToken takes it: UTF-8, blank-padded to 32 bytes."""
    encoded = label.encode("utf-8")
    if not encoded or len(encoded) > LABEL_BYTES:
        raise TokenInitError(f"a token label is 1 to {LABEL_BYTES} bytes of UTF-8, got {label!r}")
    return encoded.ljust(LABEL_BYTES, b" ")


def init_token(module: str, label: str, *, pin: str, so_pin: str) -> None:
    """Initialise the first slot whose token is not initialised yet as ``label``, with
    ``so_pin``, then log in as the security officer and set the user ``pin``."""
    raw_label = padded_label(label)
    try:
        lib = pkcs11.lib(module)
        free = [
            slot
            for slot in lib.get_slots(token_present=True)
            if not slot.get_token().flags & TokenFlag.TOKEN_INITIALIZED
        ]
    except (PKCS11Error, RuntimeError) as exc:
        raise TokenInitError(f"could not load {module}: {type(exc).__name__}") from None
    if not free:
        raise TokenInitError("no slot has an uninitialised token")
    # python-pkcs11 has no C_InitToken; the module is the one it loaded and initialised
    # (dlopen of a loaded path returns the same library).
    c_init_token = ctypes.CDLL(module).C_InitToken
    c_init_token.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    c_init_token.restype = ctypes.c_ulong
    so_pin_bytes = so_pin.encode("utf-8")
    rv = c_init_token(free[0].slot_id, so_pin_bytes, len(so_pin_bytes), raw_label)
    if rv != 0:
        raise TokenInitError(f"C_InitToken failed: CKR 0x{rv:08x}")
    try:
        # The slot list is read again: SoftHSM gives the initialised token a new slot id.
        token = lib.get_token(token_label=label)
        with token.open(rw=True, so_pin=so_pin) as session:
            session.init_pin(pin)
    except PKCS11Error as exc:
        raise TokenInitError(f"setting the user PIN failed: {type(exc).__name__}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Initialise a token with the PINs given as JSON on stdin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", required=True, help="path of the PKCS#11 module")
    parser.add_argument("--label", required=True, help="the new token's label")
    args = parser.parse_args(argv)
    try:
        pin, so_pin = _pins(sys.stdin.read())
        init_token(args.module, args.label, pin=pin, so_pin=so_pin)
    except TokenInitError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


def _pins(text: str) -> tuple[str, str]:
    try:
        pins = json.loads(text)
        pin, so_pin = pins["pin"], pins["so_pin"]
    except (ValueError, KeyError, TypeError):
        pin = so_pin = None
    if not isinstance(pin, str) or not isinstance(so_pin, str):
        raise TokenInitError('stdin must be {"pin": "...", "so_pin": "..."}')
    return pin, so_pin


if __name__ == "__main__":
    raise SystemExit(main())
