"""Fixtures on the real SoftHSM token shared by the whole test process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signer.hsm.pkcs11 import Pkcs11Backend
from signer.hsm.softhsm import SoftHsmToken, find_module
from tests.hsm_token import session_token


@pytest.fixture(scope="session")
def hsm_token() -> SoftHsmToken:
    """The process's SoftHSM token (SOFTHSM2_CONF is exported before the module loads)."""
    return session_token()


@pytest.fixture
async def backend(hsm_token: SoftHsmToken) -> AsyncIterator[Pkcs11Backend]:
    """A backend on the session token, closed after the test."""
    hsm = Pkcs11Backend(find_module(), hsm_token.label, hsm_token.pin)
    yield hsm
    await hsm.aclose()
