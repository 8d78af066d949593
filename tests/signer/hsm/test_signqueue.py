"""The sign queue batches concurrent callers and gives each its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from jwks.algorithms import Alg
from signer.errors import HsmError, HsmUnavailable, SignerError
from signer.hsm.base import KeyRef
from signer.hsm.signqueue import SignJob, SignQueue

REF = KeyRef(key_id="00", label="signer/test/00", alg=Alg.ES256)


class Recorder:
    """A batch signer that records each batch and 'signs' by reversing the input."""

    def __init__(self, *, fail_on: bytes | None = None, release: asyncio.Event | None = None):
        self.batches: list[list[bytes]] = []
        self.fail_on = fail_on
        self.release = release

    async def __call__(self, jobs: Sequence[SignJob]) -> list[bytes | SignerError]:
        self.batches.append([job.data for job in jobs])
        if self.release is not None:
            await self.release.wait()
        return [HsmError("refused") if job.data == self.fail_on else job.data[::-1] for job in jobs]


async def test_a_lone_caller_is_signed_in_a_batch_of_one() -> None:
    recorder = Recorder()
    queue = SignQueue(recorder)
    assert await queue.submit(REF, b"abc") == b"cba"
    assert recorder.batches == [[b"abc"]]


async def test_callers_queued_behind_a_batch_go_together_in_the_next() -> None:
    release = asyncio.Event()
    recorder = Recorder(release=release)
    queue = SignQueue(recorder)
    first = asyncio.ensure_future(queue.submit(REF, b"0"))
    await asyncio.sleep(0)  # the first batch is on its way
    rest = [asyncio.ensure_future(queue.submit(REF, bytes([65 + i]))) for i in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await first == b"0"
    assert [await r for r in rest] == [bytes([65 + i]) for i in range(5)]
    assert recorder.batches == [[b"0"], [bytes([65 + i]) for i in range(5)]]


async def test_batches_are_bounded_by_max_batch() -> None:
    recorder = Recorder()
    queue = SignQueue(recorder, max_batch=4)
    results = await asyncio.gather(*(queue.submit(REF, bytes([i])) for i in range(10)))
    assert results == [bytes([i]) for i in range(10)]
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]


async def test_submit_many_answers_in_order_from_one_batch() -> None:
    recorder = Recorder()
    queue = SignQueue(recorder)

    assert await queue.submit_many(REF, [b"ab", b"cd", b"ef"]) == [b"ba", b"dc", b"fe"]
    assert recorder.batches == [[b"ab", b"cd", b"ef"]]


async def test_submit_many_raises_when_any_input_is_refused() -> None:
    queue = SignQueue(Recorder(fail_on=b"bad"))

    with pytest.raises(HsmError, match="refused"):
        await queue.submit_many(REF, [b"ok", b"bad", b"ok"])


async def test_one_jobs_error_is_its_own() -> None:
    queue = SignQueue(Recorder(fail_on=b"bad"))
    good, bad = await asyncio.gather(
        queue.submit(REF, b"ok"), queue.submit(REF, b"bad"), return_exceptions=True
    )
    assert good == b"ko"
    assert isinstance(bad, HsmError)


async def test_a_failed_batch_fails_every_caller_in_it_and_the_queue_goes_on() -> None:
    calls = 0

    async def flaky(jobs: Sequence[SignJob]) -> list[bytes | SignerError]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise HsmUnavailable("token gone")
        return [job.data for job in jobs]

    queue = SignQueue(flaky)
    results = await asyncio.gather(
        queue.submit(REF, b"a"), queue.submit(REF, b"b"), return_exceptions=True
    )
    assert all(isinstance(r, HsmUnavailable) for r in results)
    assert await queue.submit(REF, b"c") == b"c"


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    release = asyncio.Event()
    queue = SignQueue(Recorder(release=release))
    gone = asyncio.ensure_future(queue.submit(REF, b"gone"))
    stays = asyncio.ensure_future(queue.submit(REF, b"stays"))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert await stays == b"syats"
    with pytest.raises(asyncio.CancelledError):
        await gone
    await queue.drain()


@pytest.mark.parametrize("turns", [1, 3], ids=["before-it-ran", "mid-batch"])
async def test_callers_are_answered_when_the_queue_is_cancelled(turns: int) -> None:
    """At shutdown the drainer may be cancelled, even before it ran: every waiter hears."""
    recorder = Recorder(release=asyncio.Event())
    queue = SignQueue(recorder, max_batch=1)
    waiting = [asyncio.ensure_future(queue.submit(REF, bytes([i]))) for i in range(3)]
    for _ in range(turns):
        await asyncio.sleep(0)
    assert len(recorder.batches) == (turns > 1)  # mid-batch: the first batch is on its way
    assert queue._drainer is not None
    queue._drainer.cancel()
    await queue.drain()

    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(r, HsmUnavailable) for r in results)


async def test_a_callers_inputs_split_over_batches_are_answered_together_in_order() -> None:
    recorder = Recorder()
    queue = SignQueue(recorder, max_batch=2)

    signatures = await queue.submit_many(REF, [b"a1", b"b2", b"c3", b"d4", b"e5"])

    assert signatures == [b"1a", b"2b", b"3c", b"4d", b"5e"]
    assert recorder.batches == [[b"a1", b"b2"], [b"c3", b"d4"], [b"e5"]]


async def test_after_one_input_is_refused_the_callers_other_inputs_are_not_signed() -> None:
    recorder = Recorder(fail_on=b"bad")
    queue = SignQueue(recorder, max_batch=1)

    with pytest.raises(HsmError):
        await queue.submit_many(REF, [b"bad", b"never"])

    assert recorder.batches == [[b"bad"]]
