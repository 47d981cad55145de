"""The built-in ``anthropic`` provider through the Engine, over real loopback HTTP,
against ``tests.fakes.anthropic_upstream`` (which rejects what the Messages API
rejects), and across vendors with the fake OpenAI upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pluggy
import pytest
import turnout.plugins.providers.anthropic as anthropic_plugin
from turnout import TurnoutError
from turnout.contract import hookspecs
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.errors import FailureClass, PolicyError, ProviderError
from turnout.plugins.providers.anthropic import AnthropicProvider
from turnout.wire.chat import ChatRequest

from tests.conftest import build_engine
from tests.fakes.anthropic_upstream import FakeAnthropic, Fault
from tests.fakes.openai_upstream import FakeOpenAI

KEY = "sk-ant-api03-test-0123456789"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

POLICY = """
providers:
  claude:
    type: anthropic
    base_url: {anthropic}
    api_key: {key}
    timeout: {{connect: 1s, read: 2s}}
  gpt:
    type: openai
    base_url: {openai}
    api_key: sk-openai-test
routes:
  - name: claude-first
    match: {{model: claude-first}}
    targets: [claude/claude-sonnet-4-5]
    fallbacks: [gpt/gpt-4o-mini]
    retry: {{attempts: 2, backoff: 1ms, max_backoff: 5ms}}
  - name: gpt-first
    match: {{model: gpt-first}}
    targets: [gpt/gpt-4o]
    fallbacks: [claude/claude-sonnet-4-5]
    retry: {{attempts: 1, backoff: 1ms}}
  - name: direct
    match: {{model: "*/*"}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
async def engine(fake, fake_openai):
    fake.reset()
    fake_openai.reset()
    built = build_engine(
        POLICY.format(anthropic=fake.base_url, openai=fake_openai.base_url, key=KEY),
        plugins=[anthropic_plugin],
    )
    yield built
    await built.aclose()


def ask(text: str = "hello", model: str = "claude/claude-sonnet-4-5", **extra: Any) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sent(fake: FakeAnthropic) -> dict[str, Any]:
    return fake.requests[-1].body


async def collect(stream) -> tuple[list[Any], str, dict[int, dict[str, Any]], str | None]:
    chunks = [chunk async for chunk in stream]
    text, calls, finish = "", {}, None
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                slot = calls.setdefault(call["index"], {"arguments": ""})
                if "id" in call:
                    slot.update(id=call["id"], name=call["function"]["name"])
                slot["arguments"] += call["function"].get("arguments", "")
    return chunks, text, calls, finish


# --------------------------------------------------------------------------
# through the engine
# --------------------------------------------------------------------------


async def test_plain_chat_with_usage_and_cost(engine, fake):
    response = await engine.chat(ask("hello there"))
    assert response.choices[0].message.content == "echo: hello there"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens > 0
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.extra_fields.provider == "claude"
    assert response.extra_fields.cost is not None and response.extra_fields.cost > 0
    request = fake.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.body["max_tokens"] == 21_333  # claude-sonnet-4-5's default, non-streaming


async def test_multi_turn_with_system_prompts_and_repeated_roles(engine, fake):
    response = await engine.chat(
        {
            "model": "claude/claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "noted"},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "second"},
                {"role": "user", "content": "third"},
            ],
        }
    )
    assert response.choices[0].message.content == "echo: second third"
    body = sent(fake)
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert [b["text"] for b in body["system"]] == ["You are terse.", "Answer in English."]


async def test_tools_round_trip(engine, fake):
    request = ask("weather in Paris? call_tool", tools=[WEATHER], tool_choice="required")
    first = await engine.chat(request)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls
    assert call["id"].startswith("toolu_") and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["text"] == "weather in Paris? call_tool"
    assert sent(fake)["tool_choice"] == {"type": "any"}

    request["messages"] += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21°C"},
    ]
    second = await engine.chat(request | {"tool_choice": "auto"})
    assert second.choices[0].message.content == "echo: tool said sunny, 21°C"
    results = sent(fake)["messages"][-1]["content"]
    assert results == [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny, 21°C"}]


async def test_parallel_tool_calls_and_disabling_them(engine, fake):
    both = await engine.chat(ask("call_tools twice", tools=[WEATHER]))
    assert [c["id"][-1] for c in both.choices[0].message.tool_calls] == ["0", "1"]
    one = await engine.chat(ask("call_tools twice", tools=[WEATHER], parallel_tool_calls=False))
    assert len(one.choices[0].message.tool_calls) == 1
    assert sent(fake)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_a_tool_result_without_its_tool_call_is_rejected_by_the_upstream(engine, fake):
    request = {
        "model": "claude/claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "tool", "tool_call_id": "toolu_nowhere", "content": "?"},
        ],
    }
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(request)
    assert caught.value.status_code == 400 and "tool_use" in caught.value.message


async def test_images_as_base64_and_url(engine, fake):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    response = await engine.chat(
        {"model": "claude/claude-sonnet-4-5", "messages": [{"role": "user", "content": content}]}
    )
    assert response.choices[0].message.content == "echo: what is this [image] [image]"
    sources = [b["source"]["type"] for b in sent(fake)["messages"][0]["content"][1:]]
    assert sources == ["base64", "url"]


async def test_an_image_anthropic_cannot_take_fails_before_any_request(engine, fake):
    bmp = {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(
            {"model": "claude/claude-sonnet-4-5", "messages": [{"role": "user", "content": [bmp]}]}
        )
    assert caught.value.status_code == 400 and "image/bmp" in caught.value.message
    assert fake.requests == []


async def test_streaming_text(engine, fake):
    stream = engine.stream(ask("stream these words please", stream_options={"include_usage": True}))
    chunks, text, _, finish = await collect(stream)
    assert text == "echo: stream these words please"
    assert finish == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0
    assert stream.extra_fields.provider == "claude" and stream.extra_fields.cost > 0
    assert sent(fake)["stream"] is True and sent(fake)["max_tokens"] == 64_000


async def test_streaming_tool_calls(engine, fake):
    _, text, calls, finish = await engine_stream_tools(engine, "call_tools please")
    assert text == "" and finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    for index, call in calls.items():
        assert call["name"] == "get_weather" and call["id"].startswith("toolu_")
        assert json.loads(call["arguments"]) == {"text": "call_tools please", "n": index}


async def engine_stream_tools(engine, text):
    return await collect(engine.stream(ask(text, tools=[WEATHER])))


async def test_thinking_is_surfaced_and_can_be_sent_back(engine, fake):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = await engine.chat(ask("call_tool now", tools=[WEATHER], thinking=thinking))
    message = first.choices[0].message
    assert message.reasoning_content == "The user said call_tool now."
    assert message.thinking_blocks[0]["signature"].startswith("sig_")

    follow_up = ask("call_tool now", tools=[WEATHER], thinking=thinking)
    follow_up["messages"] += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0]["id"], "content": "done"},
    ]
    second = await engine.chat(follow_up)
    assert sent(fake)["messages"][1]["content"][0]["type"] == "thinking"
    assert second.choices[0].message.content == "echo: tool said done"

    chunks, *_ = await collect(engine.stream(ask("think", thinking=thinking)))
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for c in chunks
        if c.choices
    )
    assert reasoning == "The user said think."


async def test_reasoning_effort_becomes_a_thinking_budget(engine, fake):
    asked = ask("think hard", reasoning_effort="medium", max_tokens=500, temperature=0.2)
    response = await engine.chat(asked)
    assert sent(fake)["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert sent(fake)["max_tokens"] == 8692 and "temperature" not in sent(fake)
    message = response.choices[0].message
    assert message.content == "echo: think hard" and response.choices[0].finish_reason == "stop"
    assert message.reasoning_content == "The user said think hard."

    chunks, text, _, finish = await collect(engine.stream(asked))  # thinking_delta events
    assert text == "echo: think hard" and finish == "stop" and sent(fake)["thinking"]
    extras = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    assert "".join(e.get("reasoning_content", "") for e in extras) == message.reasoning_content


@pytest.mark.parametrize(
    ("extra", "finish", "content"),
    [
        ({"stop": ["words"]}, "stop", "echo: some "),
        ({"max_tokens": 2}, "length", "echo: some"),
        ({}, "content_filter", "echo: some words refuse_me"),
    ],
)
async def test_stop_reasons(engine, fake, extra, finish, content):
    text = "some words refuse_me" if finish == "content_filter" else "some words"
    response = await engine.chat(ask(text, **extra))
    assert response.choices[0].finish_reason == finish
    assert response.choices[0].message.content == content


async def test_cached_prompt_tokens_are_counted_once(engine, fake):
    system = {"role": "system", "content": [
        {"type": "text", "text": "a long shared preamble " * 5, "cache_control": {"type": "ephemeral"}}]}  # fmt: skip
    request = {
        "model": "claude/claude-sonnet-4-5",
        "messages": [system, {"role": "user", "content": "q"}],
    }
    first = (await engine.chat(request)).usage
    second = (await engine.chat(request)).usage
    assert first.prompt_tokens_details == {"cached_tokens": 0, "cache_creation_tokens": 20}
    assert second.prompt_tokens_details == {"cached_tokens": 20, "cache_creation_tokens": 0}
    assert first.prompt_tokens == second.prompt_tokens == 22


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

PROMPT_TOO_LONG = {"type": "error", "error": {"type": "invalid_request_error",
                   "message": "prompt is too long: 208656 tokens > 200000 maximum"}}  # fmt: skip


@pytest.fixture
async def call(fake):
    fake.reset()
    provider = AnthropicProvider(
        ProviderSettings(name="claude", type="anthropic", base_url=fake.base_url)
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
        request = ChatRequest.model_validate(ask("a b c d e f"))
        yield provider, ProviderCall(request, "claude-sonnet-4-5", KEY, client, 2.0)


async def failure_of(provider, call, *, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        if stream:
            async for _ in provider.stream(call):
                pass
        else:
            await provider.chat(call)
    assert KEY not in caught.value.message
    return caught.value


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault.status(529), FailureClass.OVERLOADED),
        (Fault.status(429, retry_after=7), FailureClass.RATE_LIMITED),
        (Fault.status(500), FailureClass.SERVER_ERROR),
        (Fault.status(401), FailureClass.AUTH),
        (Fault.status(403), FailureClass.AUTH),
        (Fault.status(402), FailureClass.AUTH),
        (Fault.status(400), FailureClass.BAD_REQUEST),
        (Fault.status(400, body=PROMPT_TOO_LONG), FailureClass.CONTEXT_LENGTH),
        (Fault.status(413), FailureClass.CONTEXT_LENGTH),
        (Fault.status(502, body="<html>bad gateway</html>"), FailureClass.SERVER_ERROR),
        (Fault.reset(), FailureClass.CONNECTION),
        (Fault.malformed_json(), FailureClass.SERVER_ERROR),
        (Fault.error_body_200(), FailureClass.OVERLOADED),
    ],
    ids=str,
)
async def test_errors_of_each_class(call, fake, fault, failure, stream):
    provider, provider_call = call
    fake.script(fault)
    error = await failure_of(provider, provider_call, stream=stream)
    assert error.failure is failure
    if failure is FailureClass.RATE_LIMITED:
        assert error.retry_after == 7.0


async def test_a_stream_cut_before_message_stop_is_a_connection_failure(call, fake):
    provider, provider_call = call
    fake.script(Fault.truncated_stream())
    assert (
        await failure_of(provider, provider_call, stream=True)
    ).failure is FailureClass.CONNECTION


async def test_a_wrong_key_is_an_auth_failure(call, fake):
    provider, provider_call = call
    provider_call.api_key = "sk-ant-wrong-key-0000"
    error = await failure_of(provider, provider_call, stream=False)
    assert error.failure is FailureClass.AUTH and error.status_code == 401
    assert "sk-ant-wrong-key-0000" not in error.message


async def test_the_fake_rejects_a_missing_version_header_and_bearer_auth(fake):
    async with httpx.AsyncClient() as client:
        body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        url = fake.base_url + "/v1/messages"
        no_version = await client.post(url, json=body, headers={"x-api-key": KEY})
        bearer = await client.post(
            url,
            json=body,
            headers={"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"},
        )
    assert no_version.status_code == 400
    assert no_version.json()["error"]["message"] == "anthropic-version: header is required"
    assert bearer.status_code == 401
    assert bearer.json()["error"]["type"] == "authentication_error"


# --------------------------------------------------------------------------
# across vendors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["status:529", "status:429", "status:500", "error_body_200"])
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_an_anthropic_outage_falls_back_to_openai(engine, fake, fake_openai, fault, stream):
    fake.script(fault, fault)
    request = ask("hello fallback", model="claude-first", tools=[WEATHER])
    if stream:
        response = engine.stream(request)
        _, text, _, _ = await collect(response)
        fields = response.extra_fields
    else:
        served = await engine.chat(request)
        text, fields = served.choices[0].message.content, served.extra_fields
    assert text == "echo: hello fallback"
    assert fields.provider == "gpt"
    assert [a.provider for a in fields.attempts] == ["claude", "claude", "gpt"]
    assert len(fake.requests) == 2 and len(fake_openai.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_an_openai_outage_falls_back_to_anthropic_with_tools(
    engine, fake, fake_openai, stream
):
    fake_openai.script(Fault.status(503))
    request = ask("call_tool for me", model="gpt-first", tools=[WEATHER])
    if stream:
        response = engine.stream(request)
        _, _, calls, finish = await collect(response)
        fields = response.extra_fields
        (call,) = calls.values()
        name, arguments = call["name"], call["arguments"]
    else:
        served = await engine.chat(request)
        finish, fields = served.choices[0].finish_reason, served.extra_fields
        (call,) = served.choices[0].message.tool_calls
        name, arguments = call["function"]["name"], call["function"]["arguments"]
    assert finish == "tool_calls" and name == "get_weather"
    assert json.loads(arguments)["text"] == "call_tool for me"
    assert fields.provider == "claude"
    assert [(a.provider, a.outcome) for a in fields.attempts] == [
        ("gpt", "overloaded"),
        ("claude", "ok"),
    ]


async def test_a_bad_request_is_returned_without_falling_back(engine, fake, fake_openai):
    fake.script(Fault.status(400))
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(ask(model="claude-first"))
    assert caught.value.status_code == 400
    assert fake_openai.requests == []


# --------------------------------------------------------------------------
# registration and options
# --------------------------------------------------------------------------


def test_registers_the_anthropic_type_through_the_public_hook():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(anthropic_plugin)
    registered: dict[str, type] = {}
    manager.hook.turnout_register_providers(register=registered.__setitem__)
    assert registered == {"anthropic": AnthropicProvider}
    assert AnthropicProvider.default_base_url == "https://api.anthropic.com"
    assert AnthropicProvider.price_provider == "anthropic"


async def test_options_base_url_with_v1_and_beta_header(fake):
    fake.reset()
    settings = ProviderSettings(
        name="claude", type="anthropic", base_url=fake.base_url + "/v1",
        options={"max_tokens": 300, "beta": ["a-2025", "b-2026"]},
        headers={"Authorization": "Bearer leak", "x-extra": "1"},
    )  # fmt: skip
    async with httpx.AsyncClient() as client:
        call = ProviderCall(ChatRequest.model_validate(ask()), "claude-x", KEY, client, 2.0)
        await AnthropicProvider(settings).chat(call)
    request = fake.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["anthropic-beta"] == "a-2025,b-2026"
    assert request.headers["x-extra"] == "1" and "authorization" not in request.headers
    assert request.body["max_tokens"] == 300


def test_an_unknown_option_is_a_policy_error():
    with pytest.raises(PolicyError) as caught:
        build_engine(
            "providers: {claude: {type: anthropic, api_key: k, options: {max_tokenz: 5}}}\n"
            "routes: [{name: d, match: {model: '*/*'}}]\n",
            plugins=[anthropic_plugin],
        )
    assert "max_tokenz" in str(caught.value)
