"""A real SoftHSM2 token for tests: one per test process, because SoftHSM reads SOFTHSM2_CONF once.

Suites that need the HSM add a session-scoped fixture calling ``session_token()``; keys made by
different tests share the token and stay apart by their random ``CKA_ID`` (``new_key_id()``).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from pkcs11.constants import Attribute
from pkcs11.mechanisms import KeyType
from pkcs11.types import Session
from pkcs11.util.ec import encode_named_curve_parameters

from jwks.algorithms import Alg
from signer.hsm.base import KeyRef
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.hsm.softhsm import SoftHsmToken, provision_token

_session: SoftHsmToken | None = None


def make_token(tmp_dir: Path, label: str = "test") -> SoftHsmToken:
    """Provision a fresh token in ``tmp_dir`` and point ``SOFTHSM2_CONF`` at it.

    Only the first token a process loads the module with is visible to it; child processes
    (e2e tests) can use any token by passing its ``conf_path`` in their environment instead.
    """
    token = provision_token(tmp_dir, label)
    os.environ["SOFTHSM2_CONF"] = str(token.conf_path)
    return token


def session_token() -> SoftHsmToken:
    """The token of this test process, provisioned in a temporary directory on first use."""
    global _session  # noqa: PLW0603 - one token per process is the point
    if _session is None:
        directory = Path(tempfile.mkdtemp(prefix="signer-softhsm-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _session = make_token(directory, "signer-test")
    return _session


def new_key_id() -> str:
    """A random 16-byte key id (hex), so tests sharing the session token never collide."""
    return secrets.token_hex(16)


async def make_exportable_key(backend: Pkcs11Backend, ring: str = "test") -> KeyRef:
    """An EC key made the way the signer never makes one: readable and extractable."""
    ref = KeyRef(
        key_id=new_key_id(), label=f"signer/{ring}/exportable-{secrets.token_hex(4)}", alg=Alg.ES256
    )
    ident = bytes.fromhex(ref.key_id)

    def make(session: Session) -> None:
        session.generate_keypair(
            KeyType.EC,
            public_template={
                Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1"),
                Attribute.TOKEN: True,
                Attribute.VERIFY: True,
                Attribute.ID: ident,
                Attribute.LABEL: ref.label,
            },
            private_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True,
                Attribute.SIGN: True,
                Attribute.ID: ident,
                Attribute.LABEL: ref.label,
            },
            store=True,
        )

    await backend.run_in_session(make)
    return ref
