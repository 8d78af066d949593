"""``[server] event_loop``: each kind makes the loop it names, and says which it made."""

from __future__ import annotations

import asyncio
import sys

import pytest

from signer.errors import ConfigError
from signer.eventloop import EVENT_LOOPS, EventLoopKind, loop_kind, new_event_loop


@pytest.mark.parametrize("kind", EVENT_LOOPS)
def test_each_kind_runs_coroutines_on_the_loop_it_names(kind: EventLoopKind) -> None:
    loop = new_event_loop(kind)
    try:

        async def which() -> str:
            return loop_kind(asyncio.get_running_loop())

        assert loop.run_until_complete(which()) == kind
    finally:
        loop.close()


def test_the_two_kinds_are_different_loops() -> None:
    loops = [new_event_loop(kind) for kind in EVENT_LOOPS]
    try:
        assert len({type(loop) for loop in loops}) == len(EVENT_LOOPS)
    finally:
        for loop in loops:
            loop.close()


def test_uvloop_missing_is_a_config_error_naming_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on a platform without its wheels
    with pytest.raises(ConfigError, match=r'server\.event_loop: .* set event_loop = "asyncio"'):
        new_event_loop("uvloop")
