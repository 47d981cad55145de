"""The plugin API: every hook, exercised the way a third-party plugin would use it."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel
from turnout import (
    ChatResponse,
    Engine,
    Finding,
    Guardrail,
    PluginError,
    PolicyError,
    Provider,
    ProviderCall,
    Ranking,
    Strategy,
    TurnoutError,
    hookimpl,
)
from turnout.contract import hookspecs
from turnout.plugins.providers.mock import MockProvider

from tests.conftest import user
from tests.fakes.openai_upstream import FakeOpenAI, Fault

ROOT = Path(__file__).resolve().parents[2]
POLICY = """
providers:
  mock: {type: mock}
  failing: {type: mock, options: {script: [{fail: overloaded}]}}
routes:
  - {name: r, match: {model: r}, targets: [failing/x], fallbacks: [mock/y]}
"""


@pytest.fixture
async def engine(make_engine):
    return make_engine(POLICY)


@pytest.fixture
def plugin(engine):
    """Register a plugin object for one test; the pattern docs/plugins.md shows."""
    registered = []

    def register(obj):
        engine.plugin_manager.register(obj)
        registered.append(obj)
        return obj

    try:
        yield register
    finally:
        for obj in registered:
            engine.plugin_manager.unregister(obj)


def canned(text: str) -> ChatResponse:
    return ChatResponse.model_validate(
        {
            "id": "cached-1",
            "model": "cache",
            "created": 1,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
    )


async def test_turnout_pre_request_can_answer_without_any_upstream_call(engine, plugin) -> None:
    seen = []

    class Cache:
        @hookimpl
        async def turnout_pre_request(self, ctx):
            seen.append((ctx.route.name, [a.name for a in ctx.plan.attempts]))
            return canned("from cache")

    class Observer:
        @hookimpl
        def turnout_request_finished(self, ctx, outcome):
            seen.append((outcome.status, outcome.short_circuit, len(ctx.trail)))

    plugin(Cache())
    plugin(Observer())
    response = await engine.chat(user(model="r"))
    assert response.choices[0].message.content == "from cache"
    assert seen == [("r", ["failing/x", "mock/y"]), ("ok", True, 0)]
    stream = engine.stream(user(model="r"))
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from cache"


async def test_pre_request_hooks_run_in_tryfirst_order_and_the_first_answer_wins(
    engine, plugin
) -> None:
    calls = []

    class Late:
        @hookimpl(trylast=True)
        def turnout_pre_request(self):
            calls.append("late")
            return canned("late")

    class Early:
        @hookimpl(tryfirst=True)
        async def turnout_pre_request(self):
            calls.append("early")

    plugin(Late())  # registered first: order comes from tryfirst/trylast only
    plugin(Early())
    response = await engine.chat(user(model="r"))
    assert calls == ["early", "late"] and response.choices[0].message.content == "late"


async def test_a_pre_request_hook_that_raises_blocks_the_request(engine, plugin) -> None:
    calls = []

    class Guard:
        @hookimpl
        def turnout_pre_request(self, ctx):
            raise TurnoutError("blocked by guardrail 'deny'", status_code=400, code="guardrail")

    class Observer:
        @hookimpl
        def turnout_on_error(self, attempt):
            calls.append(attempt.name)

    plugin(Guard())
    plugin(Observer())
    with pytest.raises(TurnoutError, match="guardrail 'deny'"):
        await engine.chat(user(model="r"))
    assert calls == []  # no upstream was called


async def test_a_pre_request_hook_may_rewrite_the_request(engine, plugin) -> None:
    class Redact:
        @hookimpl
        def turnout_pre_request(self, ctx):
            ctx.request = ctx.request.model_copy(
                update={"messages": [{"role": "user", "content": "[REDACTED]"}]}
            )

    plugin(Redact())
    response = await engine.chat(user("my secret", model="mock/x"))
    assert response.choices[0].message.content == "[REDACTED]"


async def test_turnout_post_response_may_replace_the_response(engine, plugin) -> None:
    class Upper:
        @hookimpl
        def turnout_post_response(self, ctx, response):
            assert ctx.attempt.name == "mock/y"
            return response.model_copy(update={"id": "rewritten"})

    plugin(Upper())
    response = await engine.chat(user(model="r"))
    assert response.id == "rewritten"


async def test_turnout_stream_chunk_sees_and_may_replace_every_chunk(engine, plugin) -> None:
    seen = []

    class Shout:
        @hookimpl
        async def turnout_stream_chunk(self, ctx, chunk):
            seen.append(ctx.attempt.name)
            if chunk.choices and chunk.choices[0].delta.content:
                chunk.choices[0].delta.content = chunk.choices[0].delta.content.upper()
                return chunk
            return None

    plugin(Shout())
    chunks = [c async for c in engine.stream(user("quiet words", model="mock/x"))]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "QUIET WORDS"
    assert set(seen) == {"mock/x"} and len(seen) == len(chunks)


async def test_turnout_on_error_observes_each_failed_attempt(engine, plugin) -> None:
    seen = []

    class Observer:
        @hookimpl
        def turnout_on_error(self, ctx, attempt, error):
            seen.append((attempt.name, error.failure.value, error.status_code))

    plugin(Observer())
    await engine.chat(user(model="r"))
    assert seen == [("failing/x", "overloaded", 503)]


async def test_turnout_upstream_headers_go_with_every_attempt_after_the_providers_own(
    make_engine,
) -> None:
    with FakeOpenAI(record=True) as up:
        up.script(Fault.status(503))
        engine = make_engine(
            f'providers: {{up: {{type: openai, base_url: "{up.base_url}", api_key: sk-x}}}}\n'
            "defaults: {retry: {attempts: 2, backoff: 1ms}}\n"
            "routes: [{name: r, match: {model: r}, targets: [up/gpt-4o]}]\n"
        )
        numbers = iter(range(1, 10))

        class Tagger:
            @hookimpl
            def turnout_upstream_headers(self, ctx, attempt):
                return {
                    "x-attempt": f"{attempt.name} #{next(numbers)}",
                    "x-request": ctx.request_id,
                }

        class Failing:
            @hookimpl
            def turnout_upstream_headers(self):
                raise RuntimeError("an observer that fails adds nothing")

        engine.plugin_manager.register(Tagger())
        engine.plugin_manager.register(Failing())
        await engine.chat(user(model="r"), request_id="req-7")
        sent = [r.headers for r in up.requests]
    assert [h["x-attempt"] for h in sent] == ["up/gpt-4o #1", "up/gpt-4o #2"]
    assert {h["x-request"] for h in sent} == {"req-7"}
    assert {h["authorization"] for h in sent} == {"Bearer sk-x"}  # the key still goes


async def test_turnout_request_finished_fires_once_whatever_happens(engine, plugin) -> None:
    seen = []

    class Observer:
        @hookimpl
        async def turnout_request_finished(self, ctx, outcome):
            seen.append((outcome.status, outcome.status_code, [r.outcome for r in ctx.trail]))

    plugin(Observer())
    await engine.chat(user(model="r"))
    with pytest.raises(TurnoutError):
        await engine.chat(
            {"model": "r", "messages": [{"role": "user", "content": "x"}], "fallbacks": []}
            | {"model": "nope/x"}
        )
    [c async for c in engine.stream(user(model="mock/x"))]
    assert seen == [("ok", 200, ["overloaded", "ok"]), ("ok", 200, ["ok"])]


async def test_respond_gets_the_answer_before_the_observers_run(engine, plugin) -> None:
    events = []

    class Observer:
        @hookimpl
        def turnout_request_finished(self, outcome):
            events.append(("finished", outcome.status))

    async def respond(response):
        events.append(("respond", response.choices[0].message.content))

    plugin(Observer())
    response = await engine.chat(user("first", model="r"), respond=respond)
    assert events == [("respond", response.choices[0].message.content), ("finished", "ok")]


async def test_observers_run_once_when_respond_fails(engine, plugin) -> None:
    seen = []

    class Observer:
        @hookimpl
        def turnout_request_finished(self, outcome):
            seen.append(outcome.status)

    async def respond(response):
        raise TurnoutError("the client cannot take it", status_code=502)

    plugin(Observer())
    with pytest.raises(TurnoutError, match="cannot take it"):
        await engine.chat(user(model="r"), respond=respond)
    assert seen == ["ok"]  # served, then the writer failed: one outcome, not two


async def test_an_observer_that_raises_never_fails_the_request(engine, plugin) -> None:
    class Broken:
        @hookimpl
        def turnout_request_finished(self):
            raise RuntimeError("metrics backend down")

        @hookimpl
        def turnout_on_error(self):
            raise RuntimeError("log sink down")

    plugin(Broken())
    response = await engine.chat(user(model="r"))
    assert response.extra_fields.provider == "mock"


class EchoTwice(Provider):
    """A third-party provider type: answers with the prompt twice."""

    free = True

    async def chat(self, call: ProviderCall) -> ChatResponse:
        text = call.request.messages[-1].content
        return canned(f"{text} {text}").model_copy(update={"model": call.model})


class ThirdParty:
    @hookimpl
    def turnout_register_providers(self, register):
        register("echo-twice", EchoTwice)


async def test_turnout_register_providers_adds_a_type_the_policy_can_use(make_engine) -> None:
    engine = make_engine("providers: {twice: {type: echo-twice}}", plugins=[ThirdParty()])
    response = await engine.chat(user("hi", model="twice/m"))
    assert response.choices[0].message.content == "hi hi"


class Reverse(Strategy):
    """A third-party strategy: the targets in reverse file order."""

    def rank(self, targets, given):
        return Ranking(list(reversed(targets)), {targets[-1].name: "last is first"})


class ReversePlugin:
    @hookimpl
    def turnout_register_strategies(self, register):
        register("reverse", Reverse)


async def test_turnout_register_strategies_adds_a_strategy_routes_can_use(make_engine) -> None:
    engine = make_engine(
        """
        providers: {mock: {type: mock}}
        routes:
          - {name: r, match: {model: r}, strategy: reverse, targets: [mock/a, mock/b, mock/c]}
        """,
        plugins=[ReversePlugin()],
    )
    plan = engine.plan(user(model="r"))
    assert [a.model for a in plan.attempts] == ["c", "b", "a"]
    assert "1. mock/c: reverse pick (last is first)" in plan.explain()
    response = await engine.chat(user(model="r"))
    assert response.model == "c"


class NoShouting(Guardrail):
    """A third-party guardrail: words in capitals, with a minimum length option."""

    class Options(BaseModel):
        min_length: int = 4

    def scan(self, text):
        return [
            Finding("SHOUT", m.start(), m.end())
            for m in re.finditer(rf"\b[A-Z]{{{self.options.min_length},}}\b", text)
        ]


class NoShoutingPlugin:
    @hookimpl
    def turnout_register_guardrails(self, register):
        register("no_shouting", NoShouting)


async def test_turnout_register_guardrails_adds_a_guardrail_routes_can_use(make_engine) -> None:
    engine = make_engine(
        """
        providers: {mock: {type: mock}}
        routes:
          - name: calm
            match: {model: calm}
            targets: [mock/echo]
            guardrails: [{type: no_shouting, action: redact, min_length: 3}]
          - name: strict
            match: {model: strict}
            targets: [mock/echo]
            guardrails: [no_shouting]
        """,
        plugins=[NoShoutingPlugin()],
    )
    response = await engine.chat(user("please STOP that NOW ok", model="calm"))
    assert response.choices[0].message.content == "please [SHOUT_1] that [SHOUT_2] ok"
    with pytest.raises(TurnoutError, match="guardrail 'no_shouting'") as caught:
        await engine.chat(user("STOP", model="strict"))
    assert caught.value.status_code == 400 and caught.value.code == "guardrail_blocked"


def test_a_guardrail_option_error_names_its_line(make_engine) -> None:
    with pytest.raises(PolicyError, match=r"routes.yaml:6:\d+: .*min_length"):
        make_engine(
            """
            providers: {mock: {type: mock}}
            routes:
              - name: calm
                match: {model: calm}
                guardrails: [{type: no_shouting, min_length: lots}]
            """,
            plugins=[NoShoutingPlugin()],
        )


async def test_turnout_shadow_finished_sees_the_mirrored_call_after_the_response(
    make_engine,
) -> None:
    import asyncio

    seen = []
    done = asyncio.Event()

    class Observer:
        @hookimpl
        def turnout_shadow_finished(self, ctx, record, cost):
            seen.append((ctx.request_id, record.provider, record.model, record.outcome, cost))
            done.set()

    engine = make_engine(
        """
        providers:
          mock: {type: mock}
          candidate: {type: mock, options: {latency: 50ms}}
        routes:
          - name: r
            match: {model: r}
            targets: [mock/live]
            shadow: {target: candidate/new-model, share: 1.0}
        """,
        plugins=[Observer()],
    )
    response = await engine.chat(user("compare me", model="r"), request_id="req-shadow")
    assert response.model == "live" and seen == []  # answered before the shadow finished
    await asyncio.wait_for(done.wait(), 5)
    assert seen == [("req-shadow", "candidate", "new-model", "ok", 0.0)]


async def test_a_failing_shadow_never_touches_the_response(make_engine) -> None:
    import asyncio

    seen = []

    class Observer:
        @hookimpl
        def turnout_shadow_finished(self, record):
            seen.append(record.outcome)

    engine = make_engine(
        """
        providers:
          mock: {type: mock}
          broken: {type: mock, options: {script: [{fail: server_error}], repeat: true}}
        routes:
          - {name: r, match: {model: r}, targets: [mock/live], shadow: {target: broken/x}}
        """,
        plugins=[Observer()],
    )
    chunks = [c async for c in engine.stream(user("a b", model="r"))]
    assert chunks[0].model == "live"
    await engine.executor.aclose()
    assert seen == ["server_error"]
    await asyncio.sleep(0)


def test_registering_a_non_provider_names_the_plugin() -> None:
    class Bad:
        @hookimpl
        def turnout_register_providers(self, register):
            register("bad", object)

    with pytest.raises(PluginError, match=r"plugin '.*Bad' registered 'bad' with"):
        Engine.from_yaml("{}", plugins=[Bad()], autoload=False)


def test_request_hooks_cannot_be_wrappers() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def turnout_pre_request(self):
            return (yield)

    with pytest.raises(PluginError, match="cannot be a wrapper"):
        Engine.from_yaml("{}", plugins=[Wrapper()], autoload=False)


def _install_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "turnout_echo_twice.py").write_text(
        textwrap.dedent("""
        from turnout import hookimpl
        from tests.engine.test_hooks import EchoTwice

        @hookimpl
        def turnout_register_providers(register):
            register("echo-twice", EchoTwice)
    """)
    )
    dist = tmp_path / "turnout_echo_twice-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: turnout-echo-twice\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text("[turnout]\necho_twice = turnout_echo_twice\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_installed_plugins_load_through_the_entry_point_group(tmp_path, monkeypatch) -> None:
    _install_entry_point(tmp_path, monkeypatch)
    monkeypatch.delenv("TURNOUT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    engine = Engine.from_yaml("providers: {twice: {type: echo-twice}}", env={})
    assert engine.plugin_manager.has_plugin("echo_twice")
    assert engine.chat_sync(user("yo", model="twice/m")).choices[0].message.content == "yo yo"
    engine.close()


def test_autoload_can_be_turned_off(tmp_path, monkeypatch) -> None:
    _install_entry_point(tmp_path, monkeypatch)
    monkeypatch.setenv("TURNOUT_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(Exception, match="unknown provider type 'echo-twice'"):
        Engine.from_yaml("providers: {twice: {type: echo-twice}}", env={})


def test_builtin_mock_is_an_ordinary_plugin(engine) -> None:
    assert engine.provider_types["mock"] is MockProvider
    assert engine.plugin_manager.has_plugin("turnout.plugins.providers.mock")


# -- lifecycle -------------------------------------------------------------------


class Tally:
    """A plugin with per-engine state, as docs/plugins.md shows: the module-level
    hook registers one ``Counted`` per engine."""

    def __init__(self) -> None:
        self.closed: list[Counted] = []

    @hookimpl
    def turnout_engine_started(self, plugin_manager, metrics) -> None:
        plugin_manager.register(Counted(metrics, self.closed))


class Counted:
    def __init__(self, metrics, closed: list[Counted]) -> None:
        from prometheus_client import Counter

        self.served = Counter("tally_requests", "Requests this engine served.", registry=metrics)
        self.closed = closed

    @hookimpl
    def turnout_request_finished(self, ctx, outcome) -> None:
        self.served.inc()

    @hookimpl
    async def turnout_engine_closed(self) -> None:
        self.closed.append(self)


async def test_turnout_engine_started_gives_each_engine_its_own_state(make_engine) -> None:
    tally = Tally()
    one, two = make_engine(POLICY, plugins=[tally]), make_engine(POLICY, plugins=[tally])
    await one.chat(user("a", model="r"))
    await one.chat(user("b", model="r"))
    await two.chat(user("c", model="r"))
    assert one.metrics.get_sample_value("tally_requests_total") == 2
    assert two.metrics.get_sample_value("tally_requests_total") == 1


async def test_turnout_engine_closed_fires_once_per_engine_on_aclose() -> None:
    tally = Tally()
    engine = Engine.from_yaml(POLICY, plugins=[tally], autoload=False)
    await engine.chat(user("a", model="r"))
    assert tally.closed == []
    await engine.aclose()
    assert len(tally.closed) == 1


async def test_a_failing_close_hook_is_logged_and_the_others_still_run() -> None:
    class Broken:
        @hookimpl
        def turnout_engine_closed(self) -> None:
            raise RuntimeError("cannot close")

    tally = Tally()
    engine = Engine.from_yaml(POLICY, plugins=[tally, Broken()], autoload=False)
    await engine.aclose()
    assert len(tally.closed) == 1


def test_a_plugin_that_fails_to_start_is_named() -> None:
    class Unstartable:
        @hookimpl
        def turnout_engine_started(self) -> None:
            raise RuntimeError("no licence")

    with pytest.raises(PluginError, match=r"plugin '.*Unstartable' failed to start: no licence"):
        Engine.from_yaml(POLICY, plugins=[Unstartable()], autoload=False)


# -- meta-tests: every hook is tested here and documented ----------------------


HOOKS = sorted(
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("turnout_")
)


def test_hook_list_is_what_we_expect() -> None:
    assert HOOKS == [
        "turnout_engine_closed",
        "turnout_engine_started",
        "turnout_on_error",
        "turnout_post_response",
        "turnout_pre_request",
        "turnout_register_guardrails",
        "turnout_register_providers",
        "turnout_register_strategies",
        "turnout_request_finished",
        "turnout_shadow_finished",
        "turnout_stream_chunk",
        "turnout_upstream_headers",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_that_exercises_it(hook: str) -> None:
    source = Path(__file__).read_text()
    assert re.search(rf"def test_{hook}_", source), f"no test named test_{hook}_*"
    assert source.count(f"def {hook}(") >= 1, f"no plugin in the tests implements {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    signature = inspect.signature(getattr(hookspecs, hook))
    params = ", ".join(signature.parameters)
    assert f"### `{hook}({params})`" in docs
