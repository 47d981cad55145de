"""The request's one timer: asyncio.timeout's semantics over successive phases."""

from __future__ import annotations

import asyncio

import pytest
from turnout.run.deadline import Deadline


async def timed(deadline: Deadline, seconds: float, work: float) -> str:
    deadline.start(seconds)
    try:
        await asyncio.sleep(work)
        return "done"
    except asyncio.CancelledError as exc:
        if deadline.end(exc):
            return "timed out"
        raise
    finally:
        deadline.end()


async def test_a_phase_past_its_limit_is_cut_and_the_next_phase_has_its_own() -> None:
    deadline = Deadline()
    assert await timed(deadline, 0.02, 1) == "timed out"
    assert await timed(deadline, 1, 0.01) == "done"
    assert await timed(deadline, 0.02, 1) == "timed out"
    deadline.close()


async def test_a_later_limit_outlives_the_timer_armed_for_an_earlier_one() -> None:
    deadline = Deadline()
    assert await timed(deadline, 0.02, 0.001) == "done"  # armed at 20 ms
    assert await timed(deadline, 0.2, 0.06) == "done"  # the 20 ms timer re-arms at 200 ms
    assert await timed(deadline, 0.1, 0.3) == "timed out"
    deadline.close()


async def test_between_phases_nothing_is_cut() -> None:
    deadline = Deadline()
    assert await timed(deadline, 0.01, 0) == "done"
    await asyncio.sleep(0.05)  # the timer fires with no phase in force
    deadline.close()


async def test_another_cancellation_is_not_a_timeout() -> None:
    deadline = Deadline()
    task = asyncio.create_task(timed(deadline, 5, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.close()
