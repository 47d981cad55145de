"""The ``gemini`` provider over real loopback HTTP against ``tests.fakes.gemini_upstream``,
directly and through the Engine (routes, fallbacks across vendors, cost)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2 as httpx
import pytest
from turnout import TurnoutError
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.contract.registry import DEFAULT_PLUGINS
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import gemini as gemini_plugin
from turnout.plugins.providers.gemini import GeminiOptions, GeminiProvider
from turnout.wire.chat import ChatRequest

from tests.fakes.gemini_upstream import DEFAULT_KEY, SKIP_SIGNATURE, FakeGemini, Fault, google_error
from tests.fakes.openai_embeddings import embed
from tests.fakes.openai_upstream import FakeOpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeGemini) -> Iterator[FakeGemini]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as c:
        yield c


def provider(fake: FakeGemini) -> GeminiProvider:
    return GeminiProvider(ProviderSettings(name="gemini", type="gemini", base_url=fake.base_url))


def make_call(client, messages, model="gemini-2.5-flash", key=DEFAULT_KEY, **extra) -> ProviderCall:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    request = ChatRequest.model_validate({"model": "g", "messages": messages, **extra})
    return ProviderCall(request, model, key, client, 5)


async def collect(fake: FakeGemini, call: ProviderCall) -> tuple[list[Any], str]:
    chunks = [c async for c in provider(fake).stream(call)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


async def fails(fake: FakeGemini, call: ProviderCall, *, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        if stream:
            async for _ in provider(fake).stream(call):
                pass
        else:
            await provider(fake).chat(call)
    return info.value


# ---------------------------------------------------------------- the provider


async def test_plain_chat_sends_the_key_in_its_header_and_the_model_in_the_path(fake, client):
    response = await provider(fake).chat(make_call(client, "hello there"))
    assert response.choices[0].message.content == "echo: hello there"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "gemini-2.5-flash" and response.id.startswith("chatcmpl-")
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == DEFAULT_KEY and "authorization" not in sent.headers
    assert DEFAULT_KEY not in sent.path


async def test_multi_turn_with_system_and_merged_turns(fake, client):
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "ack"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    response = await provider(fake).chat(make_call(client, messages))
    assert response.choices[0].message.content == "echo: two three"
    sent = fake.requests[-1].body
    assert sent["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]


async def test_tools_round_trip_through_a_gemini_3_model(fake, client):
    model = "gemini-3-flash-preview"
    first = await provider(fake).chat(
        make_call(client, "weather? call_two_tools", model, tools=[WEATHER], tool_choice="auto")
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[1]["function"]["arguments"])["n"] == 1
    assert "thought_signature" in calls[0]["extra_content"]["google"]
    sent = fake.requests[-1].body
    assert (
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
        == WEATHER["function"]["parameters"]
    )
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    history = [
        {"role": "user", "content": "weather? call_two_tools"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "rain"},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'},
    ]
    second = await provider(fake).chat(make_call(client, history, model, tools=[WEATHER]))
    assert second.choices[0].message.content == 'echo: result [{"output":"rain"},{"temp":21}]'
    parts = fake.requests[-1].body["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == calls[0]["extra_content"]["google"]["thought_signature"]

    # a client that drops extra_content (or history from another vendor) still works
    for c in calls:
        c.pop("extra_content", None)
    third = await provider(fake).chat(make_call(client, history, model, tools=[WEATHER]))
    assert third.choices[0].message.content.startswith("echo: result")
    assert fake.requests[-1].body["contents"][1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE


async def test_a_required_tool_choice_forces_a_named_call(fake, client):
    other = {"type": "function", "function": {"name": "other"}}
    call = make_call(client, "anything", tools=[WEATHER, other],
                     tool_choice={"type": "function", "function": {"name": "other"}})  # fmt: skip
    response = await provider(fake).chat(call)
    assert response.choices[0].message.tool_calls[0]["function"]["name"] == "other"


async def test_images_inline_and_by_url(fake, client):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.test/photo.webp"}},
    ]
    response = await provider(fake).chat(make_call(client, [{"role": "user", "content": content}]))
    assert response.choices[0].message.content == "echo: what is this [image/png, image/webp]"


async def test_an_image_url_without_a_known_type_is_a_bad_request_before_any_call(fake, client):
    content = [{"type": "image_url", "image_url": {"url": "https://example.test/photo"}}]
    error = await fails(
        fake, make_call(client, [{"role": "user", "content": content}]), stream=False
    )
    assert error.failure is FailureClass.BAD_REQUEST and "media type" in error.message
    assert fake.requests == []


async def test_streaming_text_ends_with_usage(fake, client):
    chunks, text = await collect(fake, make_call(client, "stream me please"))
    assert text == "echo: stream me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert fake.requests[-1].path.endswith(":streamGenerateContent?alt=sse")
    assert len({c.id for c in chunks}) == 1


async def test_streaming_tool_calls(fake, client):
    chunks, _ = await collect(fake, make_call(client, "call_two_tools now", tools=[WEATHER]))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [d["index"] for d in deltas] == [0, 1]
    assert all(d["function"]["name"] == "get_weather" for d in deltas)
    assert json.loads(deltas[0]["function"]["arguments"]) == {"query": "call_two_tools now", "n": 0}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_several_candidates(fake, client):
    response = await provider(fake).chat(make_call(client, "pick", n=2))
    assert [c.message.content for c in response.choices] == ["echo: pick", "echo: pick #1"]
    chunks, _ = await collect(fake, make_call(client, "pick", n=2))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "echo: pick", 1: "echo: pick #1"}


async def test_length_stop_and_json_mode(fake, client):
    response = await provider(fake).chat(make_call(client, "a b c d e f", max_tokens=2))
    assert response.choices[0].finish_reason == "length"
    response = await provider(fake).chat(
        make_call(client, "x", response_format={"type": "json_schema", "json_schema": {
            "name": "r", "schema": {"type": "object", "additionalProperties": False}}})
    )  # fmt: skip
    assert json.loads(response.choices[0].message.content) == {"echo": "x"}


async def test_safety_finish_and_blocked_prompts(fake, client):
    response = await provider(fake).chat(make_call(client, "unsafe_reply"))
    assert response.choices[0].finish_reason == "content_filter"
    chunks, _ = await collect(fake, make_call(client, "unsafe_reply"))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    for stream in (False, True):
        error = await fails(fake, make_call(client, "block_prompt"), stream=stream)
        assert error.failure is FailureClass.CONTENT_FILTER and "SAFETY" in error.message


async def test_usage_reports_cached_and_thinking_tokens_once(fake, client):
    fake.usage(cached_tokens=100, thoughts_tokens=7)
    response = await provider(fake).chat(make_call(client, "one two"))
    usage = response.usage
    assert usage.prompt_tokens == 102 and usage.prompt_tokens_details == {"cached_tokens": 100}
    assert usage.completion_tokens == 3 + 7 and usage.completion_tokens_details == {
        "reasoning_tokens": 7
    }
    assert usage.total_tokens == 112
    chunks, _ = await collect(fake, make_call(client, "one two"))
    assert chunks[-1].usage == usage  # the last usageMetadata, not a sum of them


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault.status(429), FailureClass.RATE_LIMITED),
        (Fault.status(503), FailureClass.OVERLOADED),
        (Fault.status(500), FailureClass.SERVER_ERROR),
        (Fault.status(504), FailureClass.TIMEOUT),
        (Fault.status(401), FailureClass.AUTH),
        (Fault.status(403), FailureClass.AUTH),
        (Fault.status(400, body=google_error(400, "The input token count (2000000) exceeds the "
                                             "maximum number of tokens allowed (1048576).")),
         FailureClass.CONTEXT_LENGTH),
        (Fault.status(400), FailureClass.BAD_REQUEST),
        (Fault.reset(), FailureClass.CONNECTION),
        (Fault.malformed_json(), FailureClass.SERVER_ERROR),
        (Fault.error_body_200(), FailureClass.SERVER_ERROR),
        (Fault.stall_after_first(), FailureClass.TIMEOUT),
    ],
    ids=str,
)  # fmt: skip
async def test_errors_are_classified(fake, client, fault, failure, stream):
    fake.script(fault)
    call = make_call(client, "hello there friend")
    call.timeout = 0.3
    error = await fails(fake, call, stream=stream)
    assert error.failure is failure


async def test_a_stream_cut_short_is_a_connection_failure_after_its_first_chunks(fake, client):
    fake.script(Fault.truncated_stream())
    received = []
    with pytest.raises(ProviderError) as info:
        async for chunk in provider(fake).stream(make_call(client, "a b c d e f")):
            received.append(chunk)
    assert received and info.value.failure is FailureClass.CONNECTION


async def test_rate_limits_say_when_to_retry(fake, client):
    fake.script(Fault.status(429, retry_after=3))
    error = await fails(fake, make_call(client, "x"), stream=False)
    assert error.retry_after == 3.0 and error.status_code == 429


async def test_a_wrong_or_missing_key_is_auth_and_never_echoed(fake, client):
    bad = "AIzaSy-this-is-the-wrong-key-123456"
    error = await fails(fake, make_call(client, "x", key=bad), stream=False)
    assert error.failure is FailureClass.AUTH and bad not in error.message
    error = await fails(fake, make_call(client, "x", key=None), stream=True)
    assert error.failure is FailureClass.AUTH


async def test_the_fake_rejects_what_gemini_rejects(fake, client):
    """The fake is strict, so a translator mistake would show up as a 400."""
    raw = {"contents": [{"role": "user", "parts": [{"text": "a"}]},
                        {"role": "user", "parts": [{"text": "b"}]}]}  # fmt: skip
    url = f"{fake.base_url}/v1beta/models/gemini-2.5-flash:generateContent"
    headers = {"x-goog-api-key": DEFAULT_KEY}
    cases = [
        (raw, "alternate"),
        ({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f"}}]}]}, "function call turn"),
        ({"contents": [{"role": "user", "parts": [{"text": "a"}]},
                       {"role": "model", "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "f"}}]},
                       {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
         "number of function response parts"),
        ({"contents": [{"role": "system", "parts": [{"text": "a"}]}]}, "valid role"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}]}, "Base64"),
        ({"contents": [{"parts": [{"text": "a"}]}], "system_prompt": "x"}, "Unknown name"),
        ({"contents": [{"parts": [{"text": "a"}]}], "tools": [{"functionDeclarations": [
            {"name": "f", "parameters": {"type": "object", "additionalProperties": False}}]}]}, "additionalProperties"),
    ]  # fmt: skip
    for payload, words in cases:
        reply = await client.post(url, json=payload, headers=headers)
        assert reply.status_code == 400 and words in reply.json()["error"]["message"], payload
        assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    missing_signature = {"contents": [
        {"role": "user", "parts": [{"text": "a"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
    ]}  # fmt: skip
    reply = await client.post(
        url.replace("2.5-flash", "3-pro-preview"), json=missing_signature, headers=headers
    )
    assert "thought_signature" in reply.json()["error"]["message"]


def test_options_reject_unknown_keys():
    with pytest.raises(ValueError):
        GeminiOptions.model_validate({"api_versoin": "v1"})


async def test_api_version_and_model_paths(fake, client):
    settings = ProviderSettings(name="g", type="gemini", base_url=fake.base_url + "/",
                                options={"api_version": "v1beta"})  # fmt: skip
    response = await GeminiProvider(settings).chat(
        make_call(client, "hi", model="models/gemini-2.0-flash")
    )
    assert response.choices[0].message.content == "echo: hi"
    assert fake.requests[-1].path == "/v1beta/models/gemini-2.0-flash:generateContent"


# ---------------------------------------------------------------- through the engine


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


# the module itself, unless it is already a built-in
PLUGINS = [] if "turnout.plugins.providers.gemini" in DEFAULT_PLUGINS else [gemini_plugin]

POLICY = """
providers:
  gemini:
    type: gemini
    base_url: {gemini}
    api_key: {key}
    headers: {{x-fake-fault: "{gemini_fault}"}}
  openai:
    type: openai
    base_url: {openai}
    api_key: sk-openai-test
    headers: {{x-fake-fault: "{openai_fault}"}}
routes:
  - name: gemini-first
    match: {{model: gemini-first}}
    targets: [gemini/gemini-2.5-flash]
    fallbacks: [openai/gpt-4o-mini]
    retry: {{attempts: 2, backoff: 1ms, max_backoff: 10ms}}
  - name: openai-first
    match: {{model: openai-first}}
    targets: [openai/gpt-4o-mini]
    fallbacks: [gemini/gemini-2.5-flash]
    retry: {{attempts: 1}}
"""


def engine_for(make_engine, fake, fake_openai, gemini_fault="ok", openai_fault="ok"):
    text = POLICY.format(gemini=fake.base_url, key=DEFAULT_KEY, openai=fake_openai.base_url,
                         gemini_fault=gemini_fault, openai_fault=openai_fault)  # fmt: skip
    return make_engine(text, plugins=PLUGINS)


def body(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def test_the_engine_serves_gemini_with_cost(make_engine, fake, fake_openai):
    engine = engine_for(make_engine, fake, fake_openai)
    response = await engine.chat(body("gemini-first", "hello engine"))
    assert response.choices[0].message.content == "echo: hello engine"
    extra = response.extra_fields
    assert extra.provider == "gemini" and [a.outcome for a in extra.attempts] == ["ok"]
    assert extra.billed_usage.prompt_tokens == 2 and extra.billed_usage.completion_tokens == 3
    assert extra.cost is not None and extra.cost > 0

    stream = engine.stream(body("gemini-first", "call_tool please", tools=[WEATHER], stream=True))
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0]["function"]["name"] == "get_weather"
    assert stream.extra_fields.provider == "gemini" and stream.extra_fields.cost > 0


@pytest.mark.parametrize("fault", ["status:429", "status:503", "status:500"])
@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_gemini_failures_fall_back_to_openai(
    make_engine, fake, fake_openai, fault, streaming
):
    engine = engine_for(make_engine, fake, fake_openai, gemini_fault=fault)
    request = body("gemini-first", "call_tool now", tools=[WEATHER])
    if streaming:
        stream = engine.stream(request)
        chunks = [c async for c in stream]
        assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
        extra = stream.extra_fields
    else:
        response = await engine.chat(request)
        assert response.choices[0].message.tool_calls[0]["function"]["name"] == "get_weather"
        extra = response.extra_fields
    assert extra.provider == "openai"
    failure = {
        "status:429": "rate_limited",
        "status:503": "overloaded",
        "status:500": "server_error",
    }[fault]
    assert [(a.provider, a.outcome) for a in extra.attempts] == [("gemini", failure)] * 2 + [
        ("openai", "ok")
    ]


@pytest.mark.parametrize("fault", ["status:429", "status:503", "status:500"])
async def test_openai_failures_fall_back_to_gemini(make_engine, fake, fake_openai, fault):
    engine = engine_for(make_engine, fake, fake_openai, openai_fault=fault)
    stream = engine.stream(body("openai-first", "call_tool now", tools=[WEATHER]))
    chunks = [c async for c in stream]
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert stream.extra_fields.provider == "gemini"
    assert [a.provider for a in stream.extra_fields.attempts] == ["openai", "gemini"]


async def test_a_bad_request_is_not_retried_elsewhere(make_engine, fake, fake_openai):
    engine = engine_for(make_engine, fake, fake_openai, gemini_fault="status:400")
    with pytest.raises(TurnoutError) as info:
        await engine.chat(body("gemini-first", "x"))
    assert info.value.status_code == 400
    assert fake_openai.requests == []


async def test_reasoning_effort_becomes_a_thinking_budget(make_engine, fake, fake_openai):
    engine = engine_for(make_engine, fake, fake_openai)
    response = await engine.chat(body("gemini-first", "think", reasoning_effort="low"))
    config = fake.requests[-1].body["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}
    assert response.choices[0].message.content == "echo: think"
    assert response.extra_fields.provider == "gemini"


EMBED_POLICY = """
providers:
  gemini: {{type: gemini, base_url: {gemini}, api_key: {key}}}
  openai: {{type: openai, base_url: {openai}, api_key: sk-openai-test}}
routes:
  - name: embed
    match: {{model: embed}}
    targets: [gemini/gemini-embedding-001]
    fallbacks: [openai/text-embedding-3-small]
    retry: {{attempts: 1}}
  - name: direct
    match: {{model: "*/*"}}
"""


@pytest.fixture
def embedder(make_engine, fake, fake_openai):
    fake_openai.reset()
    text = EMBED_POLICY.format(gemini=fake.base_url, key=DEFAULT_KEY, openai=fake_openai.base_url)
    return make_engine(text, plugins=PLUGINS)


async def test_embeddings_are_sent_in_batches_of_100_and_billed(embedder, fake):
    texts = [f"text number {i}" for i in range(150)]
    answer = await embedder.embeddings.create({"model": "embed", "input": texts, "dimensions": 8})
    sent = [r for r in fake.requests if r.path.endswith(":batchEmbedContents")]
    assert [len(r.body["requests"]) for r in sent] == [100, 50]
    assert sent[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent[0].body["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "text number 0"}]},
        "outputDimensionality": 8,
    }
    assert sent[0].headers["x-goog-api-key"] == DEFAULT_KEY
    assert len(answer["data"]) == 150
    assert answer["data"][149]["embedding"] == pytest.approx(embed("text number 149", 8))
    extra = answer["extra_fields"]
    assert extra["provider"] == "gemini" and extra["request_type"] == "embedding"
    assert answer["usage"]["prompt_tokens"] > 0 and extra["cost"] > 0


async def test_gemini_embeddings_fall_back_to_openai(embedder, fake, fake_openai):
    fake.script(Fault.status(503))
    answer = await embedder.embeddings.create({"model": "embed", "input": "hello"})
    assert answer["extra_fields"]["provider"] == "openai"
    assert len(answer["data"][0]["embedding"]) == 1536
    assert fake_openai.requests[-1].body["model"] == "text-embedding-3-small"


async def test_a_chat_model_does_not_embed_and_token_arrays_are_a_400(embedder):
    with pytest.raises(TurnoutError, match="not supported for batchEmbedContents") as info:
        await embedder.embeddings.create({"model": "gemini/gemini-2.5-flash", "input": "x"})
    assert info.value.status_code == 404
    with pytest.raises(TurnoutError, match="not tokens") as info:
        await embedder.embeddings.create({"model": "gemini/gemini-embedding-001", "input": [1, 2]})
    assert info.value.status_code == 400
