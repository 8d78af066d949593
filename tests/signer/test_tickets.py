"""A ticket answers one caller's items with one future, in item order."""

from __future__ import annotations

import asyncio

import pytest

from signer.errors import HsmError
from signer.tickets import Ticket


async def test_the_caller_is_answered_once_every_item_is_in_item_order() -> None:
    ticket: Ticket[str] = Ticket(asyncio.get_running_loop(), 3)
    ticket.answer(2, "c")
    ticket.answer(0, "a")
    assert ticket.waiting
    ticket.answer(1, "b")
    assert not ticket.waiting
    assert await ticket.done == ["a", "b", "c"]


async def test_no_items_are_answered_at_once() -> None:
    ticket: Ticket[str] = Ticket(asyncio.get_running_loop(), 0)
    assert await ticket.done == []


async def test_the_first_error_is_the_callers_and_later_answers_are_dropped() -> None:
    ticket: Ticket[str] = Ticket(asyncio.get_running_loop(), 2)
    ticket.fail(HsmError("first"))
    ticket.fail(HsmError("second"))
    ticket.answer(0, "a")
    ticket.answer(1, "b")
    with pytest.raises(HsmError, match="first"):
        await ticket.done


async def test_a_cancelled_caller_is_not_answered() -> None:
    ticket: Ticket[str] = Ticket(asyncio.get_running_loop(), 1)
    ticket.done.cancel()
    assert not ticket.waiting
    ticket.answer(0, "a")  # no InvalidStateError: the queue does not have to check
    ticket.fail(HsmError("late"))
    assert ticket.done.cancelled()
