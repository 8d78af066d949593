"""One wait per caller for work that a queue does in batches.

The sign queue and the audit writer take a caller's items into batches that they send over to
a thread, and answer item by item. A future per item, gathered per caller, costs the event loop
a callback per item and a second future per call, on the hot path of every token
(docs/performance.md). A ticket is one future per call instead: the queue fills in each item's
answer and the future resolves with all of them once the last arrives, or with the first error.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Ticket(Generic[T]):
    """The answers to one caller's ``size`` items, in item order, delivered as one future."""

    __slots__ = ("_answers", "_missing", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._answers: list[T | None] = [None] * size
        self._missing = size
        self.done: asyncio.Future[list[T]] = loop.create_future()
        if size == 0:
            self.done.set_result([])

    @property
    def waiting(self) -> bool:
        """Whether the caller still waits: not answered, failed or cancelled yet."""
        return not self.done.done()

    def answer(self, index: int, answer: T) -> None:
        """Item ``index``'s answer; the caller is woken once every item has one."""
        if self.done.done():  # failed by another item, or the caller was cancelled
            return
        self._answers[index] = answer
        self._missing -= 1
        if not self._missing:
            self.done.set_result(cast("list[T]", self._answers))  # every item has its answer now

    def fail(self, error: BaseException) -> None:
        """The first error of any item is the caller's; later answers are dropped."""
        if not self.done.done():
            self.done.set_exception(error)


__all__ = ["Ticket"]
