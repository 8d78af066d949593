"""State stores: the ``StateStore`` port and its adapters."""

from signer.store.base import StaleWrite, StateStore

__all__ = ["StaleWrite", "StateStore"]
