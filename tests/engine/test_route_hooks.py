"""Hooks no route configures are not called: the selection made per compiled route."""

from __future__ import annotations

from pathlib import Path

import pytest
from turnout import Engine, hookimpl
from turnout.plugin_api import for_routes

from tests.conftest import user

CACHE = "turnout.plugins.cache.engine"
GUARDRAILS = "turnout.plugins.guardrails.engine"
POLICY = """
providers: {mock: {type: mock}}
routes:
  - {name: cached, match: {model: cached}, targets: [mock/echo], cache: {ttl: 10m}}
  - {name: guarded, match: {model: guarded}, targets: [mock/echo], guardrails: [secrets]}
  - {name: plain, match: {model: plain}, targets: [mock/echo]}
"""


def route(engine: Engine, name: str):
    return next(r for r in engine.table.routes if r.name == name)


def called(engine: Engine, name: str, hook: str) -> list[str]:
    """(plugin, implementation) pairs route ``name`` calls for ``hook``."""
    selected = getattr(route(engine, name).hooks, hook)
    return [f"{impl.plugin_name}:{impl.function.__name__}" for impl in selected.calls]


class Spy:
    """Counts the requests it sees, per route."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def turnout_pre_request(self, ctx) -> None:
        self.seen.append(ctx.route.name)


class CachedOnly(Spy):
    @hookimpl
    @for_routes(lambda route: route.cache is not None)
    def turnout_pre_request(self, ctx) -> None:
        self.seen.append(ctx.route.name)


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine(POLICY)


def test_a_route_without_cache_or_guardrails_calls_neither_plugin(engine) -> None:
    for hook in ("turnout_post_response", "turnout_stream_chunk", "turnout_request_finished"):
        assert not [c for c in called(engine, "plain", hook) if c.startswith((CACHE, GUARDRAILS))]
    # the only cache hook left: drops a ``cache`` body object before it goes upstream
    pre = called(engine, "plain", "turnout_pre_request")
    assert [c for c in pre if c.startswith((CACHE, GUARDRAILS))] == [f"{CACHE}:drop_control"]
    assert f"{CACHE}:turnout_pre_request" in called(engine, "cached", "turnout_pre_request")
    assert not [c for c in called(engine, "cached", "turnout_pre_request") if GUARDRAILS in c]
    assert f"{GUARDRAILS}:turnout_pre_request" in called(engine, "guarded", "turnout_pre_request")
    assert f"{GUARDRAILS}:turnout_stream_chunk" in called(engine, "guarded", "turnout_stream_chunk")
    assert not called(engine, "plain", "turnout_stream_chunk")  # no per-chunk call at all


async def test_a_route_with_cache_still_hits_and_one_without_never_caches(engine) -> None:
    first = await engine.chat(user(model="cached", temperature=0))
    second = await engine.chat(user(model="cached", temperature=0))
    assert (first.extra_fields.cache, second.extra_fields.cache) == ("miss", "hit")
    plain = [await engine.chat(user(model="plain", temperature=0)) for _ in range(2)]
    assert [p.extra_fields.cache for p in plain] == [None, None]
    assert all(len(p.extra_fields.attempts) == 1 for p in plain)


async def test_a_cache_object_in_the_body_is_still_dropped_on_a_route_without_cache(
    engine,
) -> None:
    seen = []

    class Upstream:
        @hookimpl(trylast=True)
        def turnout_pre_request(self, ctx) -> None:
            seen.append(dict(ctx.request.model_extra or {}))

    engine.plugin_manager.register(Upstream())
    await engine.chat(user(model="plain", cache={"no_store": True}, other=1))
    assert seen == [{"other": 1}]


async def test_a_plugin_that_does_not_say_where_it_applies_is_called_on_every_route(
    engine,
) -> None:
    spy = Spy()
    engine.plugin_manager.register(spy)  # after start-up, like the plugin fixture
    try:
        for model in ("cached", "guarded", "plain"):
            await engine.chat(user(model=model))
    finally:
        engine.plugin_manager.unregister(spy)
    assert spy.seen == ["cached", "guarded", "plain"]
    await engine.chat(user(model="plain"))
    assert spy.seen == ["cached", "guarded", "plain"]  # unregistered: no longer called


async def test_an_installed_plugin_is_called_on_every_route(make_engine) -> None:
    spy = Spy()
    engine = make_engine(POLICY, plugins=[spy])  # as the entry-point group registers it
    for model in ("cached", "plain"):
        await engine.chat(user(model=model))
    assert spy.seen == ["cached", "plain"]


async def test_for_routes_limits_a_plugin_to_the_routes_it_accepts(make_engine) -> None:
    spy = CachedOnly()
    engine = make_engine(POLICY, plugins=[spy])
    for n, model in enumerate(("cached", "guarded", "plain", "cached")):
        await engine.chat(user(f"request {n}", model=model, temperature=0))
    assert spy.seen == ["cached", "cached"]


async def test_a_reload_selects_the_hooks_of_the_new_routes(tmp_path: Path, make_engine) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY)
    spy = CachedOnly()
    engine = Engine.from_file(path, plugins=[spy])
    try:
        await engine.chat(user(model="plain", temperature=0))
        assert spy.seen == []
        path.write_text(POLICY.replace("targets: [mock/echo]}", "targets: [mock/echo], cache: {}}"))
        engine.reload()
        first = await engine.chat(user(model="plain", temperature=0))
        second = await engine.chat(user(model="plain", temperature=0))
        assert (first.extra_fields.cache, second.extra_fields.cache) == ("miss", "hit")
        assert spy.seen == ["plain"]  # the hit answered before the spy (registered first)
    finally:
        await engine.aclose()
