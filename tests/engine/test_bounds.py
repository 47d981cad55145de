"""Per-request and per-name resources a caller controls stay bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout import Engine, TurnoutError
from turnout.state.stats import TargetStats
from turnout.wire.chat import MAX_REQUEST_FALLBACKS

POLICY = """\
version: 1
providers:
  mock: {type: mock}
routes:
  - name: smart
    match: {model: smart}
    targets: [mock/echo]
"""


def test_a_request_may_name_only_so_many_fallbacks(tmp_path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY)
    engine = Engine.from_file(path, env={}, autoload=False)
    try:
        request = {
            "model": "smart",
            "messages": [{"role": "user", "content": "hi"}],
            "fallbacks": [f"mock/m{i}" for i in range(20_000)],
        }
        with pytest.raises(TurnoutError) as caught:
            engine.chat_sync(request)
        assert caught.value.status_code == 422 and caught.value.param == "fallbacks"
        assert f"at most {MAX_REQUEST_FALLBACKS}" in caught.value.message
        request["fallbacks"] = request["fallbacks"][:MAX_REQUEST_FALLBACKS]
        assert engine.chat_sync(request).extra_fields.provider == "mock"
    finally:
        engine.close()


def test_latency_figures_of_endless_names_stay_bounded() -> None:
    stats = TargetStats(limit=100)
    for i in range(60_000):
        stats.observe(f"direct/m{i}", 0.01)
    stats.observe("direct/m59950", 0.02)  # touched again: among the most recent
    assert len(stats._ewma) == len(stats._stamp) == 100
    assert stats.latency("direct/m0") is None
    assert stats.latency("direct/m59950") == 0.02 and stats.latency("direct/m59999") == 0.01


def test_a_failure_counts_as_slower_than_the_slowest_target_just_now() -> None:
    now = [0.0]
    stats = TargetStats(decay=10.0, clock=lambda: now[0])
    stats.observe("a/fast", 0.1)
    stats.observe("b/slow", 3.0)
    stats.started("c/failing")
    stats.finished("c/failing", None)
    assert stats.latency("c/failing") == pytest.approx(6.0)
    assert stats.inflight == {}


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a/x", "b/y", "c/z", "d/w"]), st.floats(0.001, 30.0)),
        min_size=1,
        max_size=60,
    )
)
def test_the_peak_is_never_below_the_latest_observation_and_never_above_the_worst(obs) -> None:
    now = [0.0]
    stats = TargetStats(clock=lambda: now[0], limit=3)
    seen: dict[str, list[float]] = {}
    for target, latency in obs:
        now[0] += 0.5
        stats.observe(target, latency)
        seen.setdefault(target, []).append(latency)
        peak = stats.latency(target)
        assert peak is not None and latency - 1e-9 <= peak <= max(seen[target]) + 1e-9
    assert len(stats._ewma) <= 3


BREAKERS = """\
version: 1
breaker: {failures: 2, cooldown: 30s}
providers:
  flood: {type: mock, options: {script: [{fail: server_error}], repeat: true}}
defaults: {retry: {attempts: 1, backoff: 1ms}}
"""


async def test_breakers_of_endless_names_stay_bounded(make_engine, monkeypatch) -> None:
    """Each failing model a caller names on a direct route moves a breaker; the
    in-memory state keeps the most recently used ones and the metric's series
    stop at the label limit, with ``other`` for the rest."""
    from turnout import metrics
    from turnout.state.memory import MemoryState

    monkeypatch.setattr(metrics, "breaker_target", metrics.ModelLabels(limit=20))
    engine = make_engine(BREAKERS)
    backend = engine.ledger.books.backend  # type: ignore[union-attr]
    assert isinstance(backend, MemoryState)
    backend.breaker_limit = 50
    for i in range(300):
        with pytest.raises(TurnoutError):
            await engine.chat(
                {"model": f"flood/m{i}", "messages": [{"role": "user", "content": "x"}]}
            )
    assert len(backend.breaker_fields) == 50
    assert "flood/m299" in backend.breaker_fields and "flood/m0" not in backend.breaker_fields
    targets = {
        sample.labels["target"]
        for family in metrics.BREAKER_STATE.collect()
        for sample in family.samples
        if sample.labels["target"].startswith("flood/") or sample.labels["target"] == "other"
    }
    assert len(targets) <= 21 and "other" in targets
