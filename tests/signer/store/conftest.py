"""Stores under test: every adapter runs the same conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signer.store.base import StateStore
from signer.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    """A fresh, empty store of each kind (Redis joins with the replicas issue)."""
    adapter = SqliteStore(tmp_path / "state.db")
    yield adapter
    await adapter.aclose()
