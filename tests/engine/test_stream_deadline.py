"""``StreamDeadline``: the route's total timeout over a stream's reads, one timer per stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from turnout.run.stream_deadline import StreamDeadline


async def items(*gaps: float) -> AsyncIterator[int]:
    for index, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield index


def left(seconds: float):  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    return lambda: end - time.monotonic()


async def test_items_come_through_and_the_end_is_the_end():
    deadline = StreamDeadline(left(5))
    stream = items(0, 0)
    assert [await deadline.read(stream), await deadline.read(stream)] == [0, 1]
    with pytest.raises(StopAsyncIteration):
        await deadline.read(stream)
    deadline.cancel()


async def test_a_read_that_outlasts_the_deadline_times_out():
    deadline = StreamDeadline(left(0.05))
    stream = items(0, 10)
    assert await deadline.read(stream) == 0
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadline.read(stream)
    assert time.monotonic() - started < 1
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_deadline_that_passed_between_reads_ends_the_next_one_at_once():
    deadline = StreamDeadline(left(0.02))
    stream = items(0, 0)
    assert await deadline.read(stream) == 0
    await asyncio.sleep(0.05)  # the caller was slow to take the chunk: nothing is cancelled
    with pytest.raises(TimeoutError):
        await deadline.read(stream)


async def test_a_clock_that_jumps_past_the_deadline_is_seen():
    now = [0.0]
    deadline = StreamDeadline(lambda: 10 - now[0])
    stream = items(0, 0)
    assert await deadline.read(stream) == 0
    now[0] = 11
    with pytest.raises(TimeoutError):
        await deadline.read(stream)
    deadline.cancel()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    deadline = StreamDeadline(left(5))

    async def read() -> int:
        return int(await deadline.read(items(10)))

    task = asyncio.ensure_future(read())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.cancel()


async def test_no_limit_reads_without_a_timer():
    deadline = StreamDeadline(lambda: None)
    assert await deadline.read(items(0)) == 0
    deadline.cancel()
