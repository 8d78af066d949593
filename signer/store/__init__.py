"""State stores: the ``StateStore`` port and its adapters, chosen by the ``[store] url``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signer.store.base import ANY_RING, Fence, FencedOut, KeyUpdate, StaleWrite, StateStore

if TYPE_CHECKING:  # settings imports nothing of the store; keep it that way at run time
    from signer.settings import StoreSettings

__all__ = [
    "ANY_RING",
    "Fence",
    "FencedOut",
    "KeyUpdate",
    "StaleWrite",
    "StateStore",
    "open_store",
]


def open_store(settings: StoreSettings) -> StateStore:
    """The adapter the URL names: SQLite for ``sqlite:``, Redis for the ``redis`` schemes.

    Adapters are imported here, lazily: a SQLite deployment never loads the Redis client.
    """
    if settings.sqlite_path is not None:
        from signer.store.sqlite import SqliteStore  # noqa: PLC0415

        return SqliteStore(settings.sqlite_path)
    from signer.store.redis import RedisStore  # noqa: PLC0415

    return RedisStore.from_url(settings.url, prefix=settings.prefix, password=settings.password)
