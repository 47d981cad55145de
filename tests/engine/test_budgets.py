"""Budgets through the engine: reservations that never overshoot, refusals that
say which budget and when it resets, cheaper targets, windows, restarts."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from turnout import Engine, TurnoutError
from turnout.policy.limits import NANO
from turnout.state import StateBackend
from turnout.state.memory import MemoryState

from tests.conftest import build_engine, user
from tests.redis_server import redis_server

# "hi" is estimated at 8 prompt tokens and bounded at 9 (its UTF-8 bytes and
# framing: what a budget holds); max_tokens 2: a hold of 11 tokens at $0.001
# each = $0.011, and the mock reports 8 + 2 tokens, $0.01.
PRICED = """
version: 1
state: {state}
providers:
  mock: {{type: mock, options: {{usage: {{prompt_tokens: 8, completion_tokens: 2}}, latency: {latency}}}}}
models:
  mock/paid: {{input_per_mtok: 1000, output_per_mtok: 1000}}
  mock/cheap: {{input_per_mtok: 100, output_per_mtok: 100}}
routes:
  - name: paid
    match: {{model: paid}}
    targets: [mock/paid]
    budget: {{limit: 1.00, window: day}}
  - name: thrifty
    match: {{model: thrifty}}
    targets: [mock/paid]
    fallbacks: [mock/cheap]
    over_budget: cheaper
    budget: {{limit: 0.051, window: hour}}
"""

REQUEST = user("hi", model="paid", max_tokens=2)


class Clock:
    def __init__(self, now: float = 1_764_028_800.0) -> None:  # 2025-11-25T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_url() -> Any:
    with redis_server() as url:
        yield url


def state_yaml(kind: str, tmp_path: Path, redis: Callable[[], str]) -> str:
    if kind == "memory":
        return "{backend: memory}"
    if kind == "sqlite":
        return f"{{backend: sqlite, path: '{tmp_path / 'state.db'}'}}"
    return f"{{backend: redis, url: '{redis()}', prefix: '{tmp_path.name}:'}}"  # unique per test


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def policy(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., str]]:
    def make(latency: str = "0s") -> str:
        state = state_yaml(request.param, tmp_path, lambda: request.getfixturevalue("redis_url"))
        return PRICED.format(state=state, latency=latency)

    yield make


async def spent(engine: Engine, route: str = "paid") -> tuple[float, float]:
    rows = await engine.ledger.status(engine.table.limits, _facts(route))  # type: ignore[arg-type]
    row = next(r for r in rows if r["scope"] == "route" and r["match"] == route)
    return row["spent"], row["reserved"]


def _facts(route: str) -> Any:
    from turnout.policy.limits import RequestFacts

    return RequestFacts(route)


async def test_500_concurrent_requests_never_overshoot_a_budget(
    policy: Callable[..., str], make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine(policy(latency="5ms"))

    async def one() -> bool:
        try:
            response = await engine.chat(REQUEST)
        except TurnoutError as exc:
            assert exc.status_code == 429, exc.message
            return False
        assert response.extra_fields is not None
        assert response.extra_fields.cost == pytest.approx(0.01)
        return True

    results = await asyncio.gather(*(one() for _ in range(500)))
    used, held = await spent(engine)
    assert used <= 1.00
    assert held == 0
    assert sum(results) >= 90  # $1.00 holds 90 requests at once ($0.011 each)
    assert used == pytest.approx(sum(results) * 0.01)


async def test_refusal_names_the_budget_and_when_it_resets(
    make_engine: Callable[..., Engine],
) -> None:
    clock = Clock(1_764_028_800.0 + 3600)
    engine = make_engine(PRICED.format(state="{}", latency="0s"), wall=clock)
    for _ in range(99):  # $0.99 spent: the next one's hold ($0.011) does not fit in $1
        await engine.chat(REQUEST)
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(REQUEST)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "budget_exceeded"
    assert "route paid budget ($1 per day)" in error.message
    assert "resets at 2025-11-26T00:00:00Z (in 82800s)" in error.message
    assert error.extra_fields["retry_after"] == 82800


async def test_a_new_window_starts_from_zero(make_engine: Callable[..., Engine]) -> None:
    clock = Clock()
    engine = make_engine(PRICED.format(state="{}", latency="0s"), wall=clock)
    for _ in range(99):  # $0.99 spent: the next one's hold ($0.011) does not fit in $1
        await engine.chat(REQUEST)
    with pytest.raises(TurnoutError):
        await engine.chat(REQUEST)
    clock.now += 86400
    await engine.chat(REQUEST)


async def test_over_budget_cheaper_routes_to_a_target_that_fits(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(PRICED.format(state="{}", latency="0s"))
    request = {**REQUEST, "model": "thrifty"}
    served = [(await engine.chat(request)).extra_fields.provider for _ in range(5)]  # type: ignore[union-attr]
    assert (await spent(engine, "thrifty"))[0] == pytest.approx(0.05)
    # $0.05 is gone at $0.01 (each held at $0.011): not even the $0.0011 fallback fits
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(request)
    assert caught.value.status_code == 429
    assert served == ["mock"] * 5


async def test_cheaper_target_is_skipped_in_the_plan_with_the_budget_reason(
    make_engine: Callable[..., Engine],
) -> None:
    policy = PRICED.format(state="{}", latency="0s").replace("limit: 0.051", "limit: 0.0155")
    engine = make_engine(policy)
    request = {**REQUEST, "model": "thrifty"}
    first = await engine.chat(request)
    assert first.extra_fields.attempts[-1].model == "paid"  # type: ignore[union-attr]
    second = await engine.chat(request)  # $0.0055 left: paid ($0.01) is skipped
    assert second.extra_fields.attempts[-1].model == "cheap"  # type: ignore[union-attr]
    assert second.extra_fields.cost == pytest.approx(0.001)  # type: ignore[union-attr]


async def test_spend_survives_a_restart(policy: Callable[..., str]) -> None:
    text = policy()
    if "memory" in text:
        pytest.skip("in-memory state is gone on restart by design")
    first = build_engine(text)
    for _ in range(3):
        await first.chat(REQUEST)
    await first.aclose()
    second = build_engine(text)
    try:
        assert (await spent(second))[0] == pytest.approx(0.03)
    finally:
        await second.aclose()


async def test_no_budget_means_no_state_calls(make_engine: Callable[..., Engine]) -> None:
    class Refusing(MemoryState):
        async def reserve(self, holds: Any) -> int:
            raise AssertionError("reserve called without a budget")

    engine = make_engine(
        "providers: {mock: {type: mock}}\nroutes: [{name: r, match: {model: r}, targets: [mock/a]}]",
        state=Refusing(),
    )
    assert engine.table.limits is None
    await engine.chat(user(model="r"))


async def test_stream_settles_to_actual_cost(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(PRICED.format(state="{}", latency="0s"))
    stream = engine.stream({**REQUEST, "stream": True})
    async for _ in stream:
        pass
    assert stream.extra_fields is not None and stream.extra_fields.cost == pytest.approx(0.01)
    assert await spent(engine) == (pytest.approx(0.01), 0)


async def test_state_outage_fails_closed_for_budgets(make_engine: Callable[..., Engine]) -> None:
    class Down(MemoryState):
        async def reserve(self, holds: Any) -> int:
            from turnout.state import StateUnavailable

            raise StateUnavailable("down")

    engine = make_engine(PRICED.format(state="{}", latency="0s"), state=Down())
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(REQUEST)
    assert caught.value.status_code == 503
    opened = PRICED.format(state="{budgets_on_error: open}", latency="0s")
    engine = make_engine(opened, state=Down())
    await engine.chat(REQUEST)


def _unused(_: StateBackend) -> None:
    textwrap.dedent("")
    _ = NANO


async def test_a_stream_reports_the_plan_its_budget_left(
    make_engine: Callable[..., Engine],
) -> None:
    """``ChatStream.plan`` is the plan that ran: the budget skipped the dear target."""
    policy = PRICED.format(state="{}", latency="0s").replace("limit: 0.051", "limit: 0.0155")
    engine = make_engine(policy)
    request = {**REQUEST, "model": "thrifty"}
    await engine.chat(request)  # $0.01 of $0.0155 spent: mock/paid no longer fits
    stream = engine.stream({**request, "stream": True})
    async for _ in stream:
        pass
    assert [a.name for a in stream.plan.attempts] == ["mock/cheap"]
    assert {s.name: s.reason.value for s in stream.plan.skipped} == {"mock/paid": "budget"}
    assert stream.extra_fields is not None and stream.extra_fields.provider == "mock"
    assert stream.extra_fields.attempts[-1].model == "cheap"


async def test_an_unreachable_redis_with_a_breaker_fails_closed_not_500(
    make_engine: Callable[..., Engine],
) -> None:
    """Reading the breakers fails along with the counters: the request still
    gets the budget's 503 (or is served with budgets_on_error: open)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    state = f"{{backend: redis, url: 'redis://127.0.0.1:{port}/0', timeout: 1s}}"
    policy = PRICED.format(state=state, latency="0s") + "breaker: {failures: 5, cooldown: 30s}\n"
    engine = make_engine(policy)
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(REQUEST)
    assert caught.value.status_code == 503
    opened = policy.replace("timeout: 1s}", "timeout: 1s, budgets_on_error: open}")
    served = await make_engine(opened).chat(REQUEST)
    assert served.extra_fields.provider == "mock"


TOKENIZED = """
version: 1
providers:
  mock: {type: mock, options: {usage: {prompt_tokens: 1000, completion_tokens: 2}, latency: 20ms}}
models:
  mock/paid: {input_per_mtok: 1000, output_per_mtok: 1000}
routes:
  - name: paid
    match: {model: paid}
    targets: [mock/paid]
    budget: {limit: 10.00, window: day}
"""


async def test_prompts_a_tokenizer_counts_higher_than_the_estimate_never_overshoot(
    make_engine: Callable[..., Engine],
) -> None:
    """1000 one-letter words: estimated at ~500 tokens, billed at 1000 ($1.002 each).
    Holding the estimate let 19 run at once on $10 and spend $19; holding the
    prompt's UTF-8 bound ($2.01 each) keeps spend within the limit."""
    engine = make_engine(TOKENIZED)
    request = user("a " * 1000, model="paid", max_tokens=2)

    async def one() -> bool:
        try:
            await engine.chat(request)
        except TurnoutError as exc:
            assert exc.status_code == 429, exc.message
            return False
        return True

    served = sum(await asyncio.gather(*(one() for _ in range(20))))
    used, held = await spent(engine)
    assert served >= 1
    assert used <= 10.00
    assert held == 0
    assert used == pytest.approx(served * 1.002)


async def test_n_choices_are_each_held_their_output_bound(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(PRICED.format(state="{backend: memory}", latency="0s"))
    plan = engine.plan(user("hi", model="paid", max_tokens=2, n=3))
    from turnout.run.operation import chat_worst_case

    plan.prompt_bound, plan.choices = 9, 3
    worst = chat_worst_case(plan.attempts[0], plan)
    assert worst.tokens == 9 + 3 * 2
    assert worst.cost == pytest.approx(15 * 0.001)
