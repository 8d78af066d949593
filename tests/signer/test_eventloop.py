"""``[server] event_loop``: each kind makes the loop it names, and says which it made."""

from __future__ import annotations

import asyncio

import pytest

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
