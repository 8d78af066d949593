"""Batch concurrent sign calls into one trip to the PKCS#11 thread.

Every PKCS#11 call runs on one thread per process (``signer.hsm.p11thread``). Sending each sign
there on its own costs two thread hand-offs and a wake-up of the event loop per signature, and
under load the hand-offs (each waiting for the GIL) cost more than SoftHSM's ECDSA itself. So
callers queue their inputs; while one batch is on the thread the next one gathers, and a single
drainer task sends each batch over in one call and wakes its callers in one loop iteration, each
caller once however many inputs it queued (``signer.tickets``).

A lone caller still goes at once: an idle queue sends a batch of one without waiting for company.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from signer.errors import HsmUnavailable, SignerError
from signer.hsm.base import KeyRef
from signer.tickets import Ticket

# Bounds the time the last caller of a batch waits behind the others (~0.1 ms per ES256 sign on
# SoftHSM, so ~25 ms) while amortising the hand-off over many signatures: batch requests of 100
# tokens signed 0.45x the raw HSM rate with 64 and 0.61x with 256 (docs/performance.md).
MAX_BATCH = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class SignJob:
    """One queued input: the key, the bytes to sign (already hashed for ECDSA), and where its
    signature goes: item ``index`` of its caller's ticket."""

    ref: KeyRef
    data: bytes
    ticket: Ticket[bytes] = field(compare=False)
    index: int


# Signs a batch on the PKCS#11 thread: a signature or the job's own error, in job order.
BatchSigner = Callable[[Sequence[SignJob]], Awaitable[list[bytes | SignerError]]]


class SignQueue:
    """The queue of one backend: ``submit`` waits for its signature, batches drain in order."""

    def __init__(self, sign_batch: BatchSigner, *, max_batch: int = MAX_BATCH) -> None:
        self._sign_batch = sign_batch
        self._max_batch = max_batch
        self._pending: list[SignJob] = []
        self._inflight: list[SignJob] = []  # the batch on the PKCS#11 thread now
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, ref: KeyRef, data: bytes) -> bytes:
        """Queue ``data`` for signing with ``ref`` and return its signature (or raise its error)."""
        (signature,) = await self.submit_many(ref, (data,))
        return signature

    async def submit_many(self, ref: KeyRef, inputs: Sequence[bytes]) -> list[bytes]:
        """Queue every input for ``ref``; their signatures in order, or the first error."""
        loop = asyncio.get_running_loop()
        ticket: Ticket[bytes] = Ticket(loop, len(inputs))
        self._pending.extend(
            SignJob(ref=ref, data=data, ticket=ticket, index=index)
            for index, data in enumerate(inputs)
        )
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(), name="pkcs11-sign-queue")
            self._drainer.add_done_callback(self._drained)
        return await ticket.done

    async def drain(self) -> None:
        """Wait until every queued job has its answer."""
        if self._drainer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._inflight = [job for job in batch if job.ticket.waiting]  # callers gone?
            if not self._inflight:
                continue
            try:
                results = await self._sign_batch(self._inflight)
            except Exception as exc:  # noqa: BLE001 -- the batch failed as a whole: each caller gets it
                for job in self._inflight:
                    _settle(job, exc)
                continue
            for job, result in zip(self._inflight, results, strict=True):
                _settle(job, result)
        self._inflight = []

    def _drained(self, task: asyncio.Task[None]) -> None:
        """Cancelled (at shutdown, perhaps before it ever ran) or failed on a bug: no caller
        may wait for an answer that never comes."""
        if not task.cancelled() and task.exception() is None:
            return
        error = HsmUnavailable("signing was interrupted; nothing was returned")
        for job in (*self._inflight, *self._pending):
            _settle(job, error)
        self._inflight, self._pending = [], []


def _settle(job: SignJob, result: bytes | BaseException) -> None:
    if isinstance(result, BaseException):
        job.ticket.fail(result)
    else:
        job.ticket.answer(job.index, result)


__all__ = ["MAX_BATCH", "BatchSigner", "SignJob", "SignQueue"]
