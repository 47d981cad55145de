"""The metrics plugin: counters and histograms move as requests finish."""

from __future__ import annotations

import threading

import pytest
from turnout import Engine, TurnoutError

POLICY = """\
version: 1
providers:
  mock: {type: mock}
  down: {type: mock, options: {script: [{fail: overloaded}], repeat: true}}
defaults:
  retry: {attempts: 2, backoff: 1ms}
routes:
  - name: metered
    match: {model: metered}
    targets: [down/a]
    fallbacks: [mock/b]
  - name: hopeless
    match: {model: hopeless}
    targets: [down/c]
"""

HI = [{"role": "user", "content": "one two three"}]


def value(engine: Engine, name: str, **labels: str) -> float:
    return engine.metrics.get_sample_value(name, labels) or 0.0


async def test_a_request_with_retries_and_a_fallback_is_counted() -> None:
    engine = Engine.from_yaml(POLICY, autoload=False)
    ok = {"route": "metered", "provider": "mock", "model": "b", "status": "200"}
    before = {
        "requests": value(engine, "turnout_requests_total", **ok),
        "retries": value(engine, "turnout_retries_total", route="metered"),
        "fallbacks": value(engine, "turnout_fallbacks_total", route="metered"),
        "failed": value(
            engine, "turnout_attempts_total", provider="down", model="a", outcome="overloaded"
        ),
        "input": value(
            engine, "turnout_tokens_total", provider="mock", model="b", direction="input"
        ),
        "latency": value(engine, "turnout_request_duration_seconds_count", route="metered"),
    }
    await engine.chat({"model": "metered", "messages": HI})
    assert value(engine, "turnout_requests_total", **ok) == before["requests"] + 1
    assert value(engine, "turnout_retries_total", route="metered") == before["retries"] + 1
    assert value(engine, "turnout_fallbacks_total", route="metered") == before["fallbacks"] + 1
    assert (
        value(engine, "turnout_attempts_total", provider="down", model="a", outcome="overloaded")
        == before["failed"] + 2
    )
    assert (
        value(engine, "turnout_tokens_total", provider="mock", model="b", direction="input")
        == before["input"] + 3
    )
    assert (
        value(engine, "turnout_request_duration_seconds_count", route="metered")
        == before["latency"] + 1
    )


async def test_a_failed_request_is_counted_with_its_status() -> None:
    engine = Engine.from_yaml(POLICY, autoload=False)
    labels = {"route": "hopeless", "provider": "down", "model": "c", "status": "503"}
    before = value(engine, "turnout_requests_total", **labels)
    try:
        await engine.chat({"model": "hopeless", "messages": HI})
    except TurnoutError as exc:
        assert exc.status_code == 503
    assert value(engine, "turnout_requests_total", **labels) == before + 1


async def test_streams_record_time_to_first_token() -> None:
    engine = Engine.from_yaml(POLICY, autoload=False)
    before = value(engine, "turnout_time_to_first_token_seconds_count", provider="mock", model="s")
    async for _ in engine.stream({"model": "mock/s", "messages": HI}):
        pass
    after = value(engine, "turnout_time_to_first_token_seconds_count", provider="mock", model="s")
    assert after == before + 1


async def test_shadow_requests_are_counted_apart_from_the_request() -> None:
    engine = Engine.from_yaml(
        """
        providers:
          mock: {type: mock}
          candidate: {type: mock, options: {script: [{fail: server_error}, {reply: ok}]}}
        routes:
          - {name: shadowed, match: {model: shadowed}, targets: [mock/live],
             shadow: {target: candidate/next}}
        """,
        autoload=False,
    )
    labels = {"route": "shadowed", "provider": "candidate", "model": "next"}
    before_failed = value(engine, "turnout_shadow_requests_total", **labels, outcome="server_error")
    before_ok = value(engine, "turnout_shadow_requests_total", **labels, outcome="ok")
    served = value(
        engine,
        "turnout_requests_total",
        route="shadowed",
        provider="mock",
        model="live",
        status="200",
    )
    for _ in range(2):
        await engine.chat({"model": "shadowed", "messages": HI})
    await engine.aclose()  # waits for the shadow calls
    assert (
        value(engine, "turnout_shadow_requests_total", **labels, outcome="server_error")
        == before_failed + 1
    )
    assert value(engine, "turnout_shadow_requests_total", **labels, outcome="ok") == before_ok + 1
    assert (
        value(
            engine,
            "turnout_requests_total",
            route="shadowed",
            provider="mock",
            model="live",
            status="200",
        )
        == served + 2
    )
    assert (
        value(engine, "turnout_shadow_duration_seconds_count", provider="candidate", model="next")
        >= 2
    )


async def test_each_engine_counts_only_its_own_requests() -> None:
    first = Engine.from_yaml(POLICY, autoload=False)
    second = Engine.from_yaml(POLICY, autoload=False)
    labels = {"route": "metered", "provider": "mock", "model": "b", "status": "200"}
    await first.chat({"model": "metered", "messages": HI})
    await first.chat({"model": "metered", "messages": HI})
    await second.chat({"model": "metered", "messages": HI})
    assert value(first, "turnout_requests_total", **labels) == 2
    assert value(second, "turnout_requests_total", **labels) == 1


async def test_model_labels_are_bounded_per_engine_not_per_process() -> None:
    from turnout.metrics import MODEL_LABEL_LIMIT

    flooded = Engine.from_yaml("providers: {mock: {type: mock}}", autoload=False)
    quiet = Engine.from_yaml("providers: {mock: {type: mock}}", autoload=False)
    try:
        for i in range(MODEL_LABEL_LIMIT):
            await flooded.chat({"model": f"mock/m{i}", "messages": HI})
        await flooded.chat({"model": "mock/one-too-many", "messages": HI})
        await quiet.chat({"model": "mock/fresh", "messages": HI})
        served = {"route": "direct", "provider": "mock", "status": "200"}
        assert value(flooded, "turnout_requests_total", **served, model="m0") == 1
        assert value(flooded, "turnout_requests_total", **served, model="one-too-many") == 0
        assert value(flooded, "turnout_requests_total", **served, model="other") == 1
        # the other engine's labels are its own: its first model keeps its name
        assert value(quiet, "turnout_requests_total", **served, model="fresh") == 1
        assert value(quiet, "turnout_requests_total", **served, model="other") == 0
    finally:
        await flooded.aclose()
        await quiet.aclose()


async def test_the_exposition_counts_sums_and_buckets_exactly_what_was_served() -> None:
    from prometheus_client.parser import text_string_to_metric_families
    from turnout.metrics import exposition
    from turnout.plugin_api import RequestContext, RequestOutcome, hookimpl
    from turnout.plugins.metrics import LATENCY_BUCKETS

    engine = Engine.from_yaml(POLICY, autoload=False)
    seen: list[RequestOutcome] = []

    class Seen:
        @hookimpl
        def turnout_request_finished(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
            seen.append(outcome)

    engine.plugin_manager.register(Seen())
    for _ in range(7):
        await engine.chat({"model": "mock/b", "messages": HI})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition(engine.metrics).decode())
        for s in family.samples
    }

    def sample(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    served = {"route": "direct", "provider": "mock", "model": "b"}
    assert sample("turnout_requests_total", **served, status="200") == 7
    tokens = {"provider": "mock", "model": "b"}
    assert sample("turnout_tokens_total", **tokens, direction="input") == sum(
        o.usage.prompt_tokens for o in seen if o.usage
    )
    assert sample("turnout_tokens_total", **tokens, direction="output") == sum(
        o.usage.completion_tokens for o in seen if o.usage
    )
    latencies = [o.latency_ms / 1000 for o in seen]
    route = {"route": "direct"}
    assert sample("turnout_request_duration_seconds_count", **route) == 7
    assert sample("turnout_request_duration_seconds_sum", **route) == pytest.approx(sum(latencies))
    buckets = [
        sample("turnout_request_duration_seconds_bucket", **route, le=str(float(bound)))
        for bound in LATENCY_BUCKETS
    ]
    assert buckets == [sum(1 for x in latencies if x <= bound) for bound in LATENCY_BUCKETS]
    assert buckets == sorted(buckets)  # cumulative
    assert sample("turnout_request_duration_seconds_bucket", **route, le="+Inf") == 7


def test_histogram_buckets_are_cumulative_with_each_value_in_its_first_bucket() -> None:
    from prometheus_client import CollectorRegistry
    from turnout.plain_metrics import HistogramCounts, SumsCollector

    histogram = HistogramCounts("h", "doc", ["route"], [0.1, 1, 10])
    registry = CollectorRegistry()
    registry.register(SumsCollector([histogram], threading.Lock()))
    for value in (0.05, 0.1, 0.5, 1, 1.5, 10, 11, 100):  # bounds are inclusive
        histogram.add(("r",), value)
    bucket = {le: registry.get_sample_value("h_bucket", {"route": "r", "le": le}) for le in
              ("0.1", "1.0", "10.0", "+Inf")}  # fmt: skip
    assert bucket == {"0.1": 2, "1.0": 4, "10.0": 6, "+Inf": 8}
    assert registry.get_sample_value("h_count", {"route": "r"}) == 8
    assert registry.get_sample_value("h_sum", {"route": "r"}) == pytest.approx(124.15)
