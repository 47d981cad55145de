"""Circuit breakers, rate limits and API keys through the engine, on an injected
clock (no sleeps): what the planner skips and why, what is refused, and when
it comes back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from turnout import Engine, TurnoutError, hookimpl
from turnout.policy.limits import hash_key
from turnout.routing.plan import Plan
from turnout.run.context import RequestContext, RequestOutcome

from tests.conftest import user

START = 1_764_028_800.0  # 2025-11-25T00:00:00Z, the start of a minute, hour and day


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Plans:
    """A plugin that keeps the plan each request ran (after live state restricted it)."""

    def __init__(self) -> None:
        self.plans: list[Plan] = []

    @hookimpl
    def turnout_request_finished(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
        self.plans.append(ctx.plan)

    def last_skips(self) -> dict[str, str]:
        return {s.name: s.reason.value for s in self.plans[-1].skipped}


def served(response: Any) -> list[str]:
    return [f"{a.provider}/{a.model}:{a.outcome}" for a in response.extra_fields.attempts]


BREAKER = """
version: 1
breaker: {failures: 2, cooldown: 30s}
providers:
  flaky: {type: mock, options: {script: [{fail: server_error}, {fail: server_error}]}}
  mock: {type: mock}
defaults: {retry: {attempts: 1, backoff: 1ms}}
routes:
  - name: r
    match: {model: r}
    targets: [flaky/a]
    fallbacks: [mock/backup]
"""


async def test_breaker_opens_skips_then_one_probe_closes_it(
    make_engine: Callable[..., Engine],
) -> None:
    clock, plans = Clock(), Plans()
    engine = make_engine(BREAKER, wall=clock, plugins=[plans])
    for _ in range(2):  # two consecutive failures: the fallback serves, the circuit opens
        response = await engine.chat(user(model="r"))
        assert served(response) == ["flaky/a:server_error", "mock/backup:ok"]
    clock.now += 29
    response = await engine.chat(user(model="r"))
    assert served(response) == ["mock/backup:ok"]  # flaky/a was not called
    assert plans.last_skips() == {"flaky/a": "circuit_open"}
    assert breaker_gauge("flaky/a") == 2  # open
    clock.now += 1  # cool-down over: one probe goes to flaky/a, which now answers
    response = await engine.chat(user(model="r"))
    assert served(response) == ["flaky/a:ok"]
    assert plans.last_skips() == {}
    response = await engine.chat(user(model="r"))  # closed again
    assert served(response) == ["flaky/a:ok"]
    assert breaker_gauge("flaky/a") == 0


def breaker_gauge(target: str) -> float | None:
    return REGISTRY.get_sample_value("turnout_breaker_state", {"target": target})


async def test_failed_probe_reopens_for_another_cooldown(
    make_engine: Callable[..., Engine],
) -> None:
    clock, plans = Clock(), Plans()
    policy = BREAKER.replace("failures: 2", "failures: 1")
    engine = make_engine(policy, wall=clock, plugins=[plans])
    await engine.chat(user(model="r"))  # fails once: open
    clock.now += 30
    response = await engine.chat(user(model="r"))  # the probe fails too
    assert served(response) == ["flaky/a:server_error", "mock/backup:ok"]
    clock.now += 29
    assert served(await engine.chat(user(model="r"))) == ["mock/backup:ok"]
    assert plans.last_skips() == {"flaky/a": "circuit_open"}
    clock.now += 1
    assert served(await engine.chat(user(model="r"))) == ["flaky/a:ok"]


RATES = """
version: 1
rate_limits:
  - {scope: target, match: mock/a, rpm: 2}
providers:
  mock: {type: mock}
routes:
  - name: r
    match: {model: r}
    targets: [mock/a]
    fallbacks: [mock/b]
  - name: slow
    match: {model: slow}
    targets: [mock/c]
    rate_limit: {rpm: 1}
"""


async def test_a_target_at_its_rate_limit_is_skipped_not_failed_and_refills(
    make_engine: Callable[..., Engine],
) -> None:
    clock, plans = Clock(), Plans()
    engine = make_engine(RATES, wall=clock, plugins=[plans])
    for _ in range(2):
        assert served(await engine.chat(user(model="r"))) == ["mock/a:ok"]
    clock.now += 59
    assert served(await engine.chat(user(model="r"))) == ["mock/b:ok"]
    skips = plans.plans[-1].skipped
    assert [(s.name, s.reason.value) for s in skips] == [("mock/a", "rate_limited")]
    assert "rpm" in skips[0].detail and "in 1s" in skips[0].detail
    clock.now += 1  # a new minute
    assert served(await engine.chat(user(model="r"))) == ["mock/a:ok"]


async def test_a_route_at_its_rate_limit_refuses_with_retry_after(
    make_engine: Callable[..., Engine],
) -> None:
    clock = Clock(START + 45)
    engine = make_engine(RATES, wall=clock)
    await engine.chat(user(model="slow"))
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user(model="slow"))
    error = caught.value
    assert (error.status_code, error.code) == (429, "rate_limit_exceeded")
    assert error.type == "rate_limit_error"
    assert error.extra_fields["retry_after"] == 15
    clock.now += 15
    await engine.chat(user(model="slow"))


SALT = "engine-test-salt-0123"

KEYED = f"""
version: 1
providers:
  mock: {{type: mock, options: {{usage: {{prompt_tokens: 8, completion_tokens: 2}}}}}}
models:
  mock/paid: {{input_per_mtok: 1000, output_per_mtok: 1000}}
  mock/free: {{input_per_mtok: 0, output_per_mtok: 0}}
routes:
  - name: paid
    match: {{model: paid}}
    targets: [mock/paid]
  - name: free
    match: {{model: "free-*"}}
    targets: [mock/free]
keys:
  salt: {SALT}
  clients:
    alice: {{hash: "{hash_key(SALT, "a-key")}", routes: [paid]}}
    bob:
      hash: "{hash_key(SALT, "b-key")}"
      models: ["free-*", paid]
      budget: {{limit: 0.021, window: hour}}  # two $0.011 holds settle to $0.01 each
      rate_limit: {{rpm: 3}}
"""


def as_key(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_keys_allowed_routes_and_models(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(KEYED)
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("hi", model="paid", max_tokens=2))
    assert (caught.value.status_code, caught.value.code) == (401, "missing_api_key")
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("hi", model="paid", max_tokens=2), headers=as_key("c-key"))
    assert (caught.value.status_code, caught.value.code) == (401, "invalid_api_key")
    await engine.chat(user("hi", model="paid", max_tokens=2), headers=as_key("a-key"))
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user(model="free-x"), headers=as_key("a-key"))  # route not allowed
    assert (caught.value.status_code, caught.value.type) == (403, "permission_error")
    await engine.chat(user(model="free-x"), headers=as_key("b-key"))


async def test_per_key_budget_and_rate_limit(make_engine: Callable[..., Engine]) -> None:
    clock = Clock()
    engine = make_engine(KEYED, wall=clock)
    bob = as_key("b-key")
    for _ in range(2):
        await engine.chat(user("hi", model="paid", max_tokens=2), headers=bob)
    with pytest.raises(TurnoutError) as caught:  # $0.02 an hour, spent
        await engine.chat(user("hi", model="paid", max_tokens=2), headers=bob)
    assert caught.value.code == "budget_exceeded" and "key bob" in caught.value.message
    # his budget does not touch alice; his rpm still counts free requests
    await engine.chat(user("hi", model="paid", max_tokens=2), headers=as_key("a-key"))
    await engine.chat(user(model="free-x"), headers=bob)
    with pytest.raises(TurnoutError) as caught:  # 3 requests counted this minute
        await engine.chat(user(model="free-x"), headers=bob)
    assert caught.value.code == "rate_limit_exceeded"
    clock.now += 60
    await engine.chat(user(model="free-x"), headers=bob)
    clock.now += 3600
    await engine.chat(user("hi", model="paid", max_tokens=2), headers=bob)


async def test_remaining_budget_is_exported_from_what_the_ledger_read(
    make_engine: Callable[..., Engine],
) -> None:
    from tests.engine.test_budgets import PRICED, REQUEST

    engine = make_engine(PRICED.format(state="{}", latency="0s").replace("1.00", "0.75"))
    for _ in range(3):
        await engine.chat(REQUEST)
    remaining = REGISTRY.get_sample_value(
        "turnout_budget_remaining", {"budget": "route paid budget", "unit": "usd"}
    )
    assert remaining == pytest.approx(0.73)  # as the third request found it
