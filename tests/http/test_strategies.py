"""Routing strategies through the gateway, against fake upstreams that differ in
latency and price, with the official openai SDK as the client."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.http.conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
providers:
  fast: {{type: openai, base_url: "{fast}", api_key: k-fast}}
  slow: {{type: openai, base_url: "{slow}", api_key: k-slow}}
models:
  fast/gpt-4o: {{input_per_mtok: 2.5, output_per_mtok: 10}}
  slow/gpt-4o-mini: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}
routes:
  - name: quick
    match: {{model: quick}}
    strategy: {{type: lowest_latency, explore: 0}}
    targets: [slow/gpt-4o-mini, fast/gpt-4o]
  - name: thrifty
    match: {{model: thrifty}}
    strategy: cheapest
    targets: [fast/gpt-4o, slow/gpt-4o-mini]
  - name: session
    match: {{model: session}}
    strategy: {{type: sticky, key: "header:x-session"}}
    targets: [fast/gpt-4o, slow/gpt-4o-mini]
  - name: priority
    match: {{model: priority}}
    strategy: ordered
    targets: [slow/gpt-4o-mini, fast/gpt-4o]
  - name: spread
    match: {{model: spread}}
    targets: [{{model: fast/gpt-4o, weight: 3}}, {{model: slow/gpt-4o-mini, weight: 1}}]
  - name: mirrored
    match: {{model: mirrored}}
    targets: [fast/gpt-4o]
    shadow: {{target: slow/gpt-4o-mini, share: 1.0}}
  - name: long
    match: {{model: chat, when: [{{field: prompt_tokens, gt: 200}}]}}
    targets: [slow/gpt-4o-mini]
  - name: chat
    match: {{model: chat}}
    targets: [fast/gpt-4o]
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI() as fast, FakeOpenAI(latency="60ms") as slow:
        yield fast, slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstreams) -> Iterator[RunningGateway]:
    fast, slow = upstreams
    path: Path = tmp_path_factory.mktemp("strategies") / "routes.yaml"
    path.write_text(POLICY.format(fast=fast.base_url, slow=slow.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


def served_by(gateway: RunningGateway, model: str, n: int, **kwargs) -> Counter[str]:
    client = gateway.client()
    counts: Counter[str] = Counter()
    text = kwargs.pop("text", "hi")
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": text}],
            max_tokens=50,
            **kwargs,
        )
        counts[raw.headers["x-turnout-provider"]] += 1
    return counts


def test_lowest_latency_sends_most_traffic_to_the_faster_upstream(gateway) -> None:
    counts = served_by(gateway, "quick", 20)
    assert counts["fast"] >= 17, counts
    assert gateway.engine.stats.latency("slow/gpt-4o-mini") > gateway.engine.stats.latency(
        "fast/gpt-4o"
    )


def test_cheapest_serves_from_the_cheaper_upstream(gateway) -> None:
    assert served_by(gateway, "thrifty", 5) == Counter({"slow": 5})


def test_sticky_keeps_a_session_on_one_upstream(gateway) -> None:
    by_session = {
        session: served_by(gateway, "session", 3, extra_headers={"x-session": session})
        for session in ("alice", "bob", "carol", "dave", "erin", "frank")
    }
    assert all(len(counts) == 1 for counts in by_session.values()), by_session
    assert {p for counts in by_session.values() for p in counts} == {"fast", "slow"}


def test_conditions_send_long_prompts_elsewhere(gateway) -> None:
    assert served_by(gateway, "chat", 1) == Counter({"fast": 1})
    assert served_by(gateway, "chat", 1, text="word " * 1000) == Counter({"slow": 1})


def test_ordered_keeps_priority_order(gateway) -> None:
    assert served_by(gateway, "priority", 3) == Counter({"slow": 3})


def test_weighted_spreads_by_weight(gateway) -> None:
    counts = served_by(gateway, "spread", 60)
    assert set(counts) == {"fast", "slow"} and counts["fast"] > counts["slow"]


def test_shadow_mirrors_without_touching_the_response(gateway, upstreams) -> None:
    _, slow = upstreams
    before = len([r for r in slow.requests if r.body and r.body.get("model") == "gpt-4o-mini"])
    assert served_by(gateway, "mirrored", 2, text="mirror me") == Counter({"fast": 2})
    gateway.wait_for(
        lambda: (
            len([r for r in slow.requests if r.body and r.body.get("model") == "gpt-4o-mini"])
            >= before + 2
        ),
        "the shadow calls to reach the slow upstream",
    )
    gateway.wait_for(
        lambda: (
            gateway.metric(
                "turnout_shadow_requests_total",
                route="mirrored",
                provider="slow",
                model="gpt-4o-mini",
                outcome="ok",
            )
            >= 2
        ),
        "the shadow results in /metrics",
    )
