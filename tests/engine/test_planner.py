"""Planner properties: weights converge, cost caps hold, fallbacks keep order, plans
are deterministic for a fixed rng."""

from __future__ import annotations

import random
import textwrap
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from turnout import ChatRequest, SkipReason
from turnout.contract.registry import collect_provider_types, make_plugin_manager
from turnout.policy.compile import compile_policy
from turnout.policy.limit_models import KeyEntry
from turnout.policy.limits import ApiKeyInfo
from turnout.policy.loader import parse_document
from turnout.policy.table import RoutingTable
from turnout.routing.plan import Role
from turnout.routing.planner import NoRouteError, plan_request
from turnout.state import StateSnapshot

TYPES = collect_provider_types(make_plugin_manager(autoload=False))


def table_of(text: str) -> RoutingTable:
    return compile_policy(parse_document(textwrap.dedent(text), env={}), TYPES)


def request(model: str = "r", text: str = "hello", **extra: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    )


def weighted_table(weights: list[int]) -> RoutingTable:
    targets = ", ".join(f"{{model: mock/m{i}, weight: {w}}}" for i, w in enumerate(weights))
    return table_of(f"""
        providers: {{mock: {{type: mock}}}}
        routes:
          - {{name: r, match: {{model: r}}, targets: [{targets}], fallbacks: [mock/fb]}}
    """)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 10), min_size=1, max_size=5), st.integers(0, 2**32))
def test_weighted_picks_converge_to_their_ratios(weights: list[int], seed: int) -> None:
    table = weighted_table(weights)
    rng = random.Random(seed)
    n = 4000
    firsts = Counter(plan_request(request(), table, rng=rng).attempts[0].model for _ in range(n))
    total = sum(weights)
    for i, w in enumerate(weights):
        share = firsts[f"m{i}"] / n
        # 4000 draws: a 5-sigma band is at most ±0.04 for any share
        assert abs(share - w / total) < 0.04, (weights, dict(firsts))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=5), st.integers(0, 2**32))
def test_every_target_appears_once_then_fallbacks_in_order(weights: list[int], seed: int) -> None:
    table = weighted_table(weights)
    plan = plan_request(
        request(fallbacks=["mock/rf1", "mock/m0", "mock/rf2"]), table, rng=random.Random(seed)
    )
    names = [a.model for a in plan.attempts]
    assert sorted(names[: len(weights)]) == sorted(f"m{i}" for i in range(len(weights)))
    assert names[len(weights) :] == ["fb", "rf1", "rf2"]  # m0 was a target already
    assert plan.attempts[0].role is Role.PICKED
    assert len(set(names)) == len(names)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_plan_is_deterministic_for_a_fixed_rng(seed: int) -> None:
    table = weighted_table([3, 1, 2])
    one = plan_request(request(), table, rng=random.Random(seed))
    two = plan_request(request(), table, rng=random.Random(seed))
    assert one.explain() == two.explain()


PRICED = """
providers: {mock: {type: mock}}
models:
  mock/cheap: {input_per_mtok: 0.1, output_per_mtok: 0.4, context_window: 100000}
  mock/mid: {input_per_mtok: 2, output_per_mtok: 8, context_window: 100000}
  mock/dear: {input_per_mtok: 15, output_per_mtok: 75, context_window: 100000}
routes:
  - name: r
    match: {model: r}
    targets: [mock/dear, mock/mid, mock/cheap]
    cost_cap: {per_request: CAP}
"""


@settings(max_examples=100, deadline=None)
@given(
    cap=st.floats(0.0001, 5, allow_nan=False),
    prompt_tokens=st.integers(0, 90000),
    max_tokens=st.one_of(st.none(), st.integers(1, 50000)),
)
def test_cost_cap_is_never_exceeded(cap: float, prompt_tokens: int, max_tokens: int | None) -> None:
    table = table_of(PRICED.replace("CAP", repr(cap)))
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    plan = plan_request(request(**extra), table, rng=random.Random(0), prompt_tokens=prompt_tokens)
    for attempt in plan.attempts:
        info = attempt.target.info
        output = max_tokens if max_tokens else 100000 - prompt_tokens
        worst = (prompt_tokens * info.input_per_mtok + output * info.output_per_mtok) / 1e6
        assert worst <= cap + 1e-12
    considered = {a.model for a in plan.attempts} | {s.name.split("/")[1] for s in plan.skipped}
    assert considered == {"dear", "mid", "cheap"}
    assert all(s.reason in (SkipReason.COST_CAP, SkipReason.CONTEXT_WINDOW) for s in plan.skipped)


def test_cost_cap_skip_explains_the_worst_case() -> None:
    table = table_of(PRICED.replace("CAP", "0.01"))
    plan = plan_request(request(max_tokens=1000), table, rng=random.Random(0))
    assert sorted(a.model for a in plan.attempts) == ["cheap", "mid"]
    (skip,) = plan.skipped
    assert skip.name == "mock/dear" and skip.reason is SkipReason.COST_CAP
    assert skip.detail == "worst case $0.075135 > cap $0.01"
    assert "mock/dear" in plan.explain() and skip.detail in plan.explain()


def test_without_max_tokens_the_worst_case_assumes_the_whole_window() -> None:
    table = table_of(PRICED.replace("CAP", "0.05"))
    plan = plan_request(request(), table, rng=random.Random(0))
    assert [a.model for a in plan.attempts] == ["cheap"]
    assert all("set max_tokens to lower it" in s.detail for s in plan.skipped)


def test_context_window_skips_targets_too_small_for_the_prompt() -> None:
    table = table_of("""
        providers: {mock: {type: mock}}
        models:
          mock/small: {context_window: 100}
          mock/large: {context_window: 100000}
        routes:
          - {name: r, match: {model: r}, targets: [mock/small], fallbacks: [mock/large]}
    """)
    plan = plan_request(request(text="word " * 400), table)
    assert [a.model for a in plan.attempts] == ["large"]
    (skip,) = plan.skipped
    assert skip.reason is SkipReason.CONTEXT_WINDOW and "context window is 100" in skip.detail


def test_disabled_and_open_circuit_targets_are_skipped_with_reasons() -> None:
    table = table_of("""
        providers:
          mock: {type: mock}
          off: {type: mock, enabled: false}
        routes:
          - {name: r, match: {model: r}, targets: [off/a, mock/b], fallbacks: [mock/c]}
    """)
    state = StateSnapshot(open_circuits=frozenset({"mock/b"}))
    plan = plan_request(request(), table, state=state, rng=random.Random(1))
    assert [a.name for a in plan.attempts] == ["mock/c"]
    reasons = {s.name: s.reason for s in plan.skipped}
    assert reasons == {"off/a": SkipReason.PROVIDER_DISABLED, "mock/b": SkipReason.CIRCUIT_OPEN}


def test_matching_is_first_route_in_file_order_with_conditions() -> None:
    table = table_of("""
        providers: {mock: {type: mock}}
        routes:
          - {name: acme, match: {model: "chat-*", metadata: {tenant: acme}}, targets: [mock/acme]}
          - {name: vip, match: {model: "chat-*", user: "vip-*"}, targets: [mock/vip]}
          - {name: header, match: {model: "chat-*", headers: {X-Tier: gold}}, targets: [mock/gold]}
          - {name: chat, match: {model: ["chat-*", "talk"]}, targets: [mock/chat]}
    """)

    def route(model: str, headers: dict[str, str] | None = None, **extra: object) -> str:
        return plan_request(request(model, **extra), table, headers=headers).route.name

    assert route("chat-1", metadata={"tenant": "acme"}) == "acme"
    assert route("chat-1", metadata={"tenant": "other"}, user="vip-7") == "vip"
    assert route("chat-1", headers={"x-tier": "gold"}) == "header"
    assert route("chat-1") == "chat"
    assert route("talk") == "chat"
    assert route("mock/anything") == "direct"
    with pytest.raises(NoRouteError) as info:
        route("unknown-model")
    assert info.value.status_code == 404


def test_request_fallbacks_modes() -> None:
    base = """
        providers: {mock: {type: mock}}
        routes:
          - {name: r, match: {model: r}, targets: [mock/t], fallbacks: [mock/f], MODE}
    """
    fallbacks = ["mock/x", "nope/y"]
    modes = {
        "request_fallbacks: append": ["t", "f", "x"],
        "request_fallbacks: replace": ["t", "x"],
        "request_fallbacks: ignore": ["t", "f"],
    }
    for mode, expected in modes.items():
        plan = plan_request(request(fallbacks=fallbacks), table_of(base.replace("MODE", mode)))
        assert [a.model for a in plan.attempts] == expected, mode
    appended = plan_request(
        request(fallbacks=fallbacks), table_of(base.replace("MODE", "request_fallbacks: append"))
    )
    assert any(
        s.reason is SkipReason.UNKNOWN_PROVIDER and s.name == "nope/y" for s in appended.skipped
    )


def test_api_keys_are_chosen_by_weight() -> None:
    table = table_of("""
        providers:
          openai:
            type: openai
            api_keys: [{key: a, weight: 1}, {key: b, weight: 3}]
        routes:
          - {name: r, match: {model: r}, targets: [openai/gpt-4o]}
    """)
    rng = random.Random(7)
    keys = Counter(
        plan_request(request(), table, rng=rng).attempts[0].key_index for _ in range(4000)
    )
    assert abs(keys[1] / 4000 - 0.75) < 0.04


KEYED_TABLE = """
    providers: {mock: {type: mock}, other: {type: mock}}
    routes:
      - {name: r, match: {model: r}, targets: [mock/a], fallbacks: [mock/fb]}
      - {name: direct, match: {model: "*/*"}}
"""
NAMES = ["mock/a", "mock/b", "mock/fb", "other/x", "other/y", "nobody/z"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=6),
    st.none() | st.lists(st.sampled_from(["r", "direct"]), max_size=2),
    st.none() | st.lists(st.sampled_from(["r", "mock/*", "other/x", "*"]), max_size=3),
)
def test_a_keys_plan_holds_only_request_fallbacks_it_could_ask_for_itself(
    fallbacks: list[str], routes: list[str] | None, models: list[str] | None
) -> None:
    table = table_of(KEYED_TABLE)
    key = ApiKeyInfo("k", KeyEntry(hash="sha256:" + "0" * 64, routes=routes, models=models))
    plan = plan_request(request(fallbacks=fallbacks), table, rng=random.Random(0), key=key)
    unkeyed = plan_request(request(fallbacks=fallbacks), table, rng=random.Random(0))
    for attempt in plan.attempts:
        if attempt.role is Role.REQUEST_FALLBACK:
            own = table.match(request(attempt.name))
            assert own is not None and key.allows(own.name, attempt.name)
    # what is left out is exactly what the key may not have, each with its reason
    kept = {a.name for a in plan.attempts}
    for attempt in unkeyed.attempts:
        if attempt.name not in kept:
            assert any(
                s.name == attempt.name and s.reason is SkipReason.NOT_ALLOWED for s in plan.skipped
            )
    assert [a.name for a in plan.attempts if a.role is not Role.REQUEST_FALLBACK] == [
        a.name for a in unkeyed.attempts if a.role is not Role.REQUEST_FALLBACK
    ]
