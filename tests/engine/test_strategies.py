"""Routing strategies and conditions: properties of each strategy, through the planner."""

from __future__ import annotations

import random
import textwrap
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout import ChatRequest
from turnout.contract.registry import collect_registry, make_plugin_manager
from turnout.policy.compile import compile_policy
from turnout.policy.loader import parse_document
from turnout.policy.table import RoutingTable
from turnout.routing.planner import plan_request
from turnout.state import StateSnapshot
from turnout.state.stats import TargetStats

from tests.conftest import user

REGISTRY = collect_registry(make_plugin_manager(autoload=False))


def table_of(text: str) -> RoutingTable:
    doc = parse_document(textwrap.dedent(text), file="routes.yaml", env={})
    return compile_policy(doc, REGISTRY.providers, REGISTRY.strategies)


def route_with(strategy: str, weights: list[int], extra: str = "") -> RoutingTable:
    targets = ", ".join(f"{{model: mock/t{i}, weight: {w}}}" for i, w in enumerate(weights))
    return table_of(f"""
        providers: {{mock: {{type: mock}}}}
        {extra}
        routes:
          - {{name: r, match: {{model: r}}, strategy: {strategy}, targets: [{targets}]}}
    """)


def request(**extra: object) -> ChatRequest:
    return ChatRequest.model_validate(user(model="r", **extra))


def first(table: RoutingTable, req: ChatRequest, **kwargs: object) -> str:
    return plan_request(req, table, **kwargs).attempts[0].model  # type: ignore[arg-type]


# -- sticky ---------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=20), st.integers(0, 2**32))
def test_sticky_keeps_a_key_on_one_target_whatever_the_rng(key: str, seed: int) -> None:
    table = route_with("{type: sticky, key: user}", [1, 2, 3])
    a = first(table, request(user=key), rng=random.Random(seed))
    b = first(table, request(user=key), rng=random.Random(seed + 1))
    assert a == b


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(0, 1000))
def test_sticky_adding_a_target_moves_only_keys_to_the_new_one(n: int, salt: int) -> None:
    before = route_with("sticky", [1] * n)
    after = route_with("sticky", [1] * (n + 1))
    keys = [f"user-{salt}-{i}" for i in range(1500)]
    moved = 0
    for key in keys:
        old = first(before, request(user=key))
        new = first(after, request(user=key))
        if old != new:
            moved += 1
            assert new == f"t{n}", "a key may only move to the target that was added"
    assert abs(moved / len(keys) - 1 / (n + 1)) < 0.05


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=4))
def test_sticky_and_weighted_converge_to_the_weights(weights: list[int]) -> None:
    total = sum(weights)
    for strategy in ("sticky", "weighted"):
        table = route_with(strategy, weights)
        rng = random.Random(0)
        counts = Counter(first(table, request(user=f"u{i}"), rng=rng) for i in range(4000))
        for i, w in enumerate(weights):
            assert abs(counts[f"t{i}"] / 4000 - w / total) < 0.04, (strategy, weights, counts)


def test_sticky_on_a_header_or_metadata_and_without_a_key() -> None:
    on_header = route_with("{type: sticky, key: 'header:X-Session'}", [1, 1, 1])
    picks = {first(on_header, request(), headers={"x-session": "abc"}) for _ in range(20)}
    assert len(picks) == 1
    on_metadata = route_with("{type: sticky, key: 'metadata:conversation'}", [1, 1, 1])
    picks = {first(on_metadata, request(metadata={"conversation": "c-1"})) for _ in range(20)}
    assert len(picks) == 1
    plan = plan_request(request(), on_metadata, rng=random.Random(1))
    assert "no sticky key: weighted" in plan.explain()


def test_sticky_key_spec_is_validated() -> None:
    with pytest.raises(Exception, match="key"):
        route_with("{type: sticky, key: 'cookie:x'}", [1, 1])


# -- cheapest -------------------------------------------------------------------

PRICES = (
    "models: {"
    "mock/t0: {input_per_mtok: 3, output_per_mtok: 15}, "
    "mock/t1: {input_per_mtok: 0.15, output_per_mtok: 0.6}, "
    "mock/t2: {input_per_mtok: 1, output_per_mtok: 2}, "
    "mock/t3: {input_per_mtok: 0.15, output_per_mtok: 0.6}}"
)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 50000), st.integers(1, 8000), st.integers(0, 2**32))
def test_cheapest_never_picks_a_dearer_eligible_target(
    tokens: int, max_tokens: int, seed: int
) -> None:
    table = route_with("cheapest", [1, 1, 1, 3], PRICES)
    plan = plan_request(
        request(max_tokens=max_tokens), table, rng=random.Random(seed), prompt_tokens=tokens
    )
    costs = [a.estimated_cost for a in plan.attempts]
    assert costs == sorted(costs)
    assert plan.attempts[0].model == "t3"  # tie with t1 broken by weight


def test_cheapest_respects_the_cost_cap_after_ordering() -> None:
    table = table_of(f"""
        providers: {{mock: {{type: mock}}}}
        {PRICES}
        routes:
          - name: r
            match: {{model: r}}
            strategy: cheapest
            targets: [mock/t0, mock/t2, mock/t1]
            cost_cap: {{per_request: 0.0005}}
    """)
    plan = plan_request(request(max_tokens=500), table)
    assert [a.model for a in plan.attempts] == ["t1"]
    assert "1. mock/t1: cheapest pick, worst case $0.000301" in plan.explain()


# -- lowest latency and least busy ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lowest_latency_prefers_the_fast_target_and_notices_recovery() -> None:
    table = route_with("{type: lowest_latency, explore: 0.05}", [1, 1])
    clock = Clock()
    stats = TargetStats(decay=10.0, clock=clock)
    state = StateSnapshot(stats=stats)
    rng = random.Random(3)

    def share_of_t0(n: int = 1000) -> float:
        return Counter(first(table, request(), state=state, rng=rng) for _ in range(n))["t0"] / n

    for _ in range(20):
        clock.now += 1
        stats.observe("mock/t0", 0.05)
        stats.observe("mock/t1", 0.50)
    assert share_of_t0() > 0.9
    # t1 recovers, t0 degrades: a slower sample takes effect at once (peak), a faster
    # one pulls the average down as time passes
    for _ in range(60):
        clock.now += 1
        stats.observe("mock/t0", 0.80)
        stats.observe("mock/t1", 0.04)
    assert share_of_t0() < 0.1
    plan = plan_request(request(), table, state=state, rng=random.Random(0))
    assert "ewma" in plan.explain() and "ms" in plan.explain()


def test_a_target_never_measured_is_tried() -> None:
    table = route_with("lowest_latency", [1, 1])
    stats = TargetStats(clock=Clock())
    stats.observe("mock/t0", 0.2)
    picks = Counter(first(table, request(), state=StateSnapshot(stats=stats)) for _ in range(500))
    assert picks["t1"] > 400


def test_least_busy_avoids_targets_with_requests_in_flight() -> None:
    table = route_with("least_busy", [5, 1, 1])
    stats = TargetStats(clock=Clock())
    for _ in range(3):
        stats.started("mock/t0")
    stats.started("mock/t1")
    state = StateSnapshot(stats=stats)
    assert {first(table, request(), state=state) for _ in range(50)} == {"t2"}
    plan = plan_request(request(), table, state=state)
    assert [a.model for a in plan.attempts] == ["t2", "t1", "t0"]
    assert "least_busy pick (0 in flight)" in plan.explain()


def test_ordered_keeps_file_order() -> None:
    table = route_with("ordered", [1, 10, 100])
    assert [a.model for a in plan_request(request(), table).attempts] == ["t0", "t1", "t2"]


async def test_the_engine_feeds_latency_figures_to_the_strategy(make_engine) -> None:
    engine = make_engine("""
        providers:
          slow: {type: mock, options: {latency: 30ms}}
          fast: {type: mock, options: {latency: 1ms}}
        routes:
          - name: r
            match: {model: r}
            strategy: {type: lowest_latency, explore: 0}
            targets: [slow/m, fast/m]
    """)
    served = Counter()
    for _ in range(12):
        response = await engine.chat(user(model="r"))
        served[response.extra_fields.provider] += 1
    assert served["fast"] >= 9
    assert engine.stats.latency("slow/m") > engine.stats.latency("fast/m")
    assert engine.stats.inflight == {}
    response = await engine.chat(user(model="r"))
    (record,) = response.extra_fields.attempts
    assert record.why.startswith("lowest_latency pick (ewma ")  # the trail names the figures


# -- conditions ------------------------------------------------------------------

CONDITIONS = """
providers: {mock: {type: mock}}
routes:
  - name: long
    match: {model: chat, when: [{field: prompt_tokens, gt: 1000}]}
    targets: [mock/long-context]
  - name: tenant
    match: {model: chat, when: [{field: header.x-tenant, in: [acme, globex]}]}
    targets: [mock/tenant]
  - name: vip
    match: {model: chat, when: [{field: user, regex: "^vip-"}, {field: metadata.tier, ne: free}]}
    targets: [mock/vip]
  - name: streaming
    match: {model: chat, when: [{field: stream, eq: true}, {field: max_tokens, lte: 100}]}
    targets: [mock/stream]
  - name: tagged
    match: {model: chat, when: [{field: metadata.tag, exists: true}]}
    targets: [mock/tagged]
  - name: default
    match: {model: chat}
    targets: [mock/default]
"""


def test_conditions_route_by_request_fields() -> None:
    table = table_of(CONDITIONS)

    def route(headers: dict[str, str] | None = None, text: str = "hi", **extra: object) -> str:
        req = ChatRequest.model_validate(user(text, model="chat", **extra))
        return plan_request(req, table, headers=headers).route.name

    assert route(text="word " * 2000) == "long"
    assert route(headers={"x-tenant": "acme"}) == "tenant"
    assert route(headers={"x-tenant": "initech"}) == "default"
    assert route(user="vip-1") == "vip"
    assert route(user="vip-1", metadata={"tier": "free"}) == "default"
    assert route(stream=True, max_tokens=50) == "streaming"
    assert route(stream=True, max_tokens=500) == "default"
    assert route(metadata={"tag": "x"}) == "tagged"
    assert route() == "default"


def test_condition_mistakes_are_located() -> None:
    with pytest.raises(Exception) as info:
        table_of("""
            providers: {mock: {type: mock}}
            routes:
              - name: a
                match: {model: x, when: [{field: prompt_tokens, gt: 1, lt: 5}, {field: user, regex: "("}]}
                targets: [mock/a]
        """)
    text = str(info.value)
    assert "exactly one operator" in text and "invalid regex" in text
    assert "routes.yaml:5:" in text


def test_unknown_strategy_is_located_with_a_hint() -> None:
    with pytest.raises(Exception) as info:
        route_with("lowest_latncy", [1, 1])
    assert "unknown strategy 'lowest_latncy'" in str(info.value)
    assert "did you mean 'lowest_latency'" in str(info.value)


def test_default_strategy_from_defaults() -> None:
    table = table_of("""
        providers: {mock: {type: mock}}
        defaults: {strategy: ordered}
        routes:
          - {name: r, match: {model: r}, targets: [mock/a, mock/b, mock/c]}
    """)
    assert [a.model for a in plan_request(request(), table).attempts] == ["a", "b", "c"]
    assert "strategy ordered" in plan_request(request(), table).explain()
