"""The response cache through the engine: memory and a real Redis."""

from __future__ import annotations

import pytest
from turnout import PolicyError, TurnoutError, hookimpl

from tests.conftest import user

POLICY = """
providers: {{mock: {{type: mock}}}}
defaults:
  cache: {{ttl: 10m, {backend}}}
routes:
  - {{name: r, match: {{model: r}}, targets: [mock/echo]}}
  - {{name: sampled, match: {{model: sampled}}, targets: [mock/echo], cache: {{sampled: true}}}}
  - {{name: tenants, match: {{model: tenants}}, targets: [mock/echo], cache: {{per_caller: true}}}}
  - {{name: off, match: {{model: off}}, targets: [mock/echo], cache: false}}
"""
MEMORY = POLICY.format(backend="backend: memory")


def greedy(text: str = "hello", **extra):
    return user(text, temperature=0, **extra)


def lookups(engine, route: str, result: str) -> float:
    return (
        engine.metrics.get_sample_value(
            "turnout_cache_lookups_total", {"route": route, "result": result}
        )
        or 0.0
    )


def errors_of(engine, backend: str, operation: str) -> float:
    return (
        engine.metrics.get_sample_value(
            "turnout_cache_errors_total", {"backend": backend, "operation": operation}
        )
        or 0.0
    )


async def test_a_repeated_request_is_answered_from_the_cache(make_engine) -> None:
    engine = make_engine(MEMORY)
    first = await engine.chat(greedy(model="r"))
    second = await engine.chat(greedy(model="r"))
    assert first.extra_fields.cache == "miss" and len(first.extra_fields.attempts) == 1
    assert second.extra_fields.cache == "hit" and second.extra_fields.attempts == []
    assert second.extra_fields.cost == 0
    assert second.choices[0].message.content == first.choices[0].message.content
    third = await engine.chat(greedy("something else", model="r"))
    assert third.extra_fields.cache == "miss"


async def test_hits_and_misses_are_counted(make_engine) -> None:
    engine = make_engine(MEMORY)
    hits, misses = lookups(engine, "r", "hit"), lookups(engine, "r", "miss")
    await engine.chat(greedy("counted", model="r"))
    await engine.chat(greedy("counted", model="r"))
    assert lookups(engine, "r", "hit") == hits + 1
    assert lookups(engine, "r", "miss") == misses + 1


async def test_sampled_requests_bypass_unless_the_route_allows_them(make_engine) -> None:
    engine = make_engine(MEMORY)
    for _ in range(2):
        response = await engine.chat(user("hi", model="r", temperature=0.7))
        assert response.extra_fields.cache == "bypass"
    unset = await engine.chat(user("hi", model="r"))  # vendors default to temperature 1
    assert unset.extra_fields.cache == "bypass"
    await engine.chat(user("hi", model="sampled", temperature=0.7))
    again = await engine.chat(user("hi", model="sampled", temperature=0.7))
    assert again.extra_fields.cache == "hit"


async def test_a_route_with_cache_off_says_nothing(make_engine) -> None:
    engine = make_engine(MEMORY)
    await engine.chat(greedy(model="off"))
    response = await engine.chat(greedy(model="off"))
    assert response.extra_fields.cache is None


async def test_per_request_control_in_the_body_and_headers(make_engine) -> None:
    engine = make_engine(MEMORY)
    skipped = await engine.chat(greedy("ctl", model="r", cache={"no_store": True}))
    assert skipped.extra_fields.cache == "miss"
    assert (await engine.chat(greedy("ctl", model="r"))).extra_fields.cache == "miss"
    fresh = await engine.chat(greedy("ctl", model="r"), headers={"cache-control": "no-cache"})
    assert fresh.extra_fields.cache == "bypass"
    assert (await engine.chat(greedy("ctl", model="r"))).extra_fields.cache == "hit"
    with pytest.raises(TurnoutError, match=r"cache.ttl") as caught:
        await engine.chat(greedy("ctl", model="r", cache={"ttl": "soon"}))
    assert caught.value.status_code == 400


async def test_the_cache_control_field_never_goes_upstream(make_engine) -> None:
    seen = []

    class Spy:
        @hookimpl(trylast=True)
        def turnout_pre_request(self, ctx):
            seen.append(ctx.request.model_extra)

    engine = make_engine(MEMORY, plugins=[Spy()])
    await engine.chat(greedy("x", model="off", cache={"no_cache": True}))
    assert seen == [{}]


async def test_callers_never_see_each_others_entries(make_engine) -> None:
    engine = make_engine(MEMORY)
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}
    await engine.chat(greedy(model="tenants"), headers=alice)
    assert (await engine.chat(greedy(model="tenants"), headers=bob)).extra_fields.cache == "miss"
    assert (await engine.chat(greedy(model="tenants"), headers=alice)).extra_fields.cache == "hit"


async def test_an_auth_plugin_can_name_the_caller(make_engine) -> None:
    class Auth:
        @hookimpl(tryfirst=True)
        def turnout_pre_request(self, ctx):
            ctx.scratch["caller_id"] = ctx.headers.get("x-team", "none")

    engine = make_engine(MEMORY, plugins=[Auth()])
    await engine.chat(greedy(model="tenants"), headers={"x-team": "a", "authorization": "k1"})
    same_team = await engine.chat(
        greedy(model="tenants"), headers={"x-team": "a", "authorization": "k2"}
    )
    assert same_team.extra_fields.cache == "hit"


async def test_a_stream_is_stored_and_a_hit_replays_as_a_stream(make_engine) -> None:
    engine = make_engine(MEMORY)
    first = engine.stream(greedy("streamed words here", model="r"))
    text = "".join([c.choices[0].delta.content or "" async for c in first if c.choices])
    assert first.cache == "miss"
    replay = engine.stream(greedy("streamed words here", model="r"))
    chunks = [c async for c in replay]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert replay.extra_fields.cache == "hit"
    plain = await engine.chat(greedy("streamed words here", model="r"))
    assert plain.extra_fields.cache == "hit"  # streamed and plain requests share entries


async def test_a_stream_cut_short_is_not_stored(make_engine) -> None:
    engine = make_engine(
        """
        providers:
          midway: {type: mock, options: {script: [{fail: server_error, fail_after_chunks: 2}]}}
        defaults: {cache: {ttl: 1m}}
        routes: [{name: r, match: {model: r}, targets: [midway/a]}]
        """
    )
    with pytest.raises(TurnoutError):
        [c async for c in engine.stream(greedy("one two three four", model="r"))]
    again = await engine.chat(greedy("one two three four", model="r"))
    assert again.extra_fields.cache == "miss"


def test_bad_cache_settings_name_their_line(make_engine) -> None:
    with pytest.raises(PolicyError) as caught:
        make_engine(
            """
            providers: {mock: {type: mock}}
            routes:
              - name: r
                match: {model: r}
                cache: {ttl: forever, backend: disk, colour: blue}
            """
        )
    text = str(caught.value)
    assert "routes.yaml:6:" in text
    assert "cache.ttl: invalid duration 'forever'" in text
    assert "cache.backend" in text and "unknown key 'colour'" in text


# -- Redis ---------------------------------------------------------------------


async def test_engines_sharing_redis_share_entries(make_engine, redis_url) -> None:
    policy = POLICY.format(backend=f"backend: redis, url: '{redis_url}', prefix: shared")
    one, two = make_engine(policy), make_engine(policy)
    assert (await one.chat(greedy("shared", model="r"))).extra_fields.cache == "miss"
    hit = await two.chat(greedy("shared", model="r"))
    assert hit.extra_fields.cache == "hit" and hit.extra_fields.attempts == []


async def test_closing_the_engine_closes_its_redis_connections(make_engine, redis_url) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(redis_url)
    name = "turnout-close-test"

    async def ours() -> int:
        return sum(1 for c in await admin.client_list() if c.get("name") == name)

    engine = make_engine(
        POLICY.format(backend=f"backend: redis, url: '{redis_url}?client_name={name}'")
    )
    await engine.chat(greedy("connects", model="r"))
    assert await ours() >= 1
    await engine.aclose()
    assert await ours() == 0
    await admin.aclose()


async def test_a_redis_outage_is_a_counted_miss_never_a_failure(make_engine) -> None:
    from tests.http.conftest import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    engine = make_engine(POLICY.format(backend=f"backend: redis, url: '{dead}', timeout: 200ms"))
    errors = errors_of(engine, "redis", "get")
    stores = errors_of(engine, "redis", "set")
    for _ in range(2):
        response = await engine.chat(greedy("outage", model="r"))
        assert response.extra_fields.cache == "miss"
        assert response.choices[0].message.content == "outage"
    assert errors_of(engine, "redis", "get") == errors + 2
    assert errors_of(engine, "redis", "set") == stores + 2
