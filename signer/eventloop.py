"""The event loop ``signer serve`` runs on: ``[server] event_loop``.

``uvloop`` (libuv, in C) is the default: in paired runs on the 2-core development VM it cut the
CPU per ES256 token by 3-20% against asyncio's pure-Python selector loop (docs/performance.md).
``asyncio`` stays available for platforms without uvloop wheels and for ruling the loop out when
a problem is being chased.
"""

from __future__ import annotations

import asyncio
from typing import Literal, get_args

from signer.errors import ConfigError

EventLoopKind = Literal["uvloop", "asyncio"]
EVENT_LOOPS: tuple[EventLoopKind, ...] = get_args(EventLoopKind)
DEFAULT_EVENT_LOOP: EventLoopKind = "uvloop"


def new_event_loop(kind: EventLoopKind) -> asyncio.AbstractEventLoop:
    """A fresh event loop of ``kind`` (not yet set as the thread's current loop)."""
    if kind == "uvloop":
        try:
            import uvloop  # noqa: PLC0415 -- only the serving process needs it
        except ImportError:
            raise ConfigError(
                'server.event_loop: uvloop is not installed here; set event_loop = "asyncio"'
            ) from None
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_kind(loop: asyncio.AbstractEventLoop) -> EventLoopKind:
    """Which kind ``loop`` is (what the start-up log and the bench's results report)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


__all__ = ["DEFAULT_EVENT_LOOP", "EVENT_LOOPS", "EventLoopKind", "loop_kind", "new_event_loop"]
