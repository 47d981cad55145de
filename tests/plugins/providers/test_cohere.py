"""The ``cohere`` provider: its translator (pure), then over real loopback HTTP
against ``tests.fakes.cohere_upstream``, directly and through the Engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout import TurnoutError
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.contract.registry import DEFAULT_PLUGINS
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import cohere as cohere_plugin
from turnout.plugins.providers import cohere_wire as wire
from turnout.plugins.providers.cohere import CohereProvider
from turnout.wire.chat import ChatRequest

from tests.fakes.cohere_upstream import DEFAULT_KEY, FakeCohere, Fault, cohere_error
from tests.fakes.openai_embeddings import embed
from tests.fakes.openai_upstream import FakeOpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    request = ChatRequest.model_validate({"model": "x", "messages": messages, **extra})
    return wire.request_body(request, "command-a-03-2025")


def call(ident: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


# ---------------------------------------------------------------- translator


def test_messages_map_one_to_one_with_the_tool_plan_as_content() -> None:
    sent = body([
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]},
        {"role": "assistant", "content": "I will check.", "tool_calls": [call("c1", "f", {"a": 1})]},
        {"role": "tool", "tool_call_id": "c1", "content": "plain text"},
        {"role": "assistant", "content": "done"},
    ], top_p=1.0, max_tokens=9, stop="X", tools=[{"type": "function", "function": {"name": "f"}}],
       tool_choice="required", response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}})  # fmt: skip
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]},
        {"role": "assistant", "tool_calls": [call("c1", "f", {"a": 1})], "tool_plan": "I will check."},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "plain text"}]},
        {"role": "assistant", "content": "done"},
    ]  # fmt: skip
    assert sent["p"] == 0.99 and sent["max_tokens"] == 9 and sent["stop_sequences"] == ["X"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    assert sent["tool_choice"] == "REQUIRED"
    assert sent["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("choice", "sent_choice", "tools"),
    [
        ("auto", None, ["f", "g"]), ("none", "NONE", ["f", "g"]), ("required", "REQUIRED", ["f", "g"]),
        ({"type": "function", "function": {"name": "g"}}, "REQUIRED", ["g"]),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
            {"type": "function", "function": {"name": "f"}}]}}, None, ["f"]),
    ],
)  # fmt: skip
def test_tool_choice(choice, sent_choice, tools) -> None:
    declared = [{"type": "function", "function": {"name": n}} for n in ("f", "g")]
    sent = body([{"role": "user", "content": "x"}], tools=declared, tool_choice=choice)
    assert sent.get("tool_choice") == sent_choice
    assert [t["function"]["name"] for t in sent["tools"]] == tools


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"n": 2}, "one choice"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "not supported"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "only function tools"),
    ],
)  # fmt: skip
def test_requests_cohere_cannot_take_are_refused(extra, words) -> None:
    messages = extra.pop("messages", [{"role": "user", "content": "x"}])
    with pytest.raises(wire.TranslationError, match=words):
        body(messages, **extra)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
    ],
)
def test_finish_reasons(reason, finish) -> None:
    assert wire.finish_reason(reason) == finish


@pytest.mark.parametrize(
    ("reason", "failure"), [("ERROR", FailureClass.SERVER_ERROR), ("TIMEOUT", FailureClass.TIMEOUT)]
)
def test_failed_generations_raise(reason, failure) -> None:
    with pytest.raises(wire.GenerationFailed) as info:
        wire.response_from_cohere(
            {"id": "x", "finish_reason": reason, "message": {}}, model="m", created=0
        )
    assert info.value.failure is failure


def test_usage_prefers_billed_units_and_counts_cached_tokens_once() -> None:
    usage = wire.usage_from_cohere({"billed_units": {"input_tokens": 100, "output_tokens": 20},
                                    "tokens": {"input_tokens": 300, "output_tokens": 22}, "cached_tokens": 60})  # fmt: skip
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 20, 120)
    assert usage.prompt_tokens_details == {"cached_tokens": 60}
    fallback = wire.usage_from_cohere({"tokens": {"input_tokens": 3, "output_tokens": 4}})
    assert (fallback.prompt_tokens, fallback.completion_tokens) == (3, 4)
    assert wire.usage_from_cohere(None) is None


@pytest.mark.parametrize(
    ("status", "message", "failure"),
    [
        (429, "You are using a Trial key", FailureClass.RATE_LIMITED),
        (400, "invalid request: bad", FailureClass.BAD_REQUEST),
        (400, "too many tokens: size limit exceeded by 1234 tokens.", FailureClass.CONTEXT_LENGTH),
        (401, "invalid api token", FailureClass.AUTH), (403, "Forbidden", FailureClass.AUTH),
        (498, "invalid token", FailureClass.AUTH), (402, "add a payment method", FailureClass.AUTH),
        (500, "internal", FailureClass.SERVER_ERROR), (503, "unavailable", FailureClass.OVERLOADED),
        (504, "gateway timeout", FailureClass.TIMEOUT), (422, "unprocessable", FailureClass.BAD_REQUEST),
    ],
)  # fmt: skip
def test_errors_are_classified(status, message, failure) -> None:
    assert wire.failure_class(status, message) is failure


names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
texts = st.text(min_size=1, max_size=12)
args = st.dictionaries(names, st.integers() | texts | st.booleans(), max_size=3)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, args), min_size=1, max_size=4), texts, st.text(max_size=10))
def test_cohere_tool_calls_round_trip(calls, ident, plan) -> None:
    """Cohere -> OpenAI -> Cohere keeps tool calls, their ids and the tool plan."""
    cohere_calls = [
        {"id": f"{n}_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, (n, a) in enumerate(calls)
    ]
    payload = {"id": ident, "finish_reason": "TOOL_CALL",
               "message": {"role": "assistant", "tool_plan": plan, "tool_calls": cohere_calls}}  # fmt: skip
    response = wire.response_from_cohere(payload, model="m", created=0)
    message = response.choices[0].message
    assert response.choices[0].finish_reason == "tool_calls"
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": message.content, "tool_calls": message.tool_calls}]  # fmt: skip
    history += [
        {"role": "tool", "tool_call_id": c["id"], "content": "{}"} for c in message.tool_calls
    ]
    replayed = body(history)["messages"][1]
    assert replayed["tool_calls"] == cohere_calls
    assert replayed.get("tool_plan", "") == plan


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["system", "user", "assistant"]), min_size=1, max_size=6), st.data()
)
def test_openai_to_cohere_keeps_every_message(roles, data) -> None:
    messages = [{"role": r, "content": data.draw(texts)} for r in roles]
    sent = body(messages)["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        (m["role"], m["content"]) for m in messages
    ]


def test_a_stream_with_a_plan_and_tool_calls() -> None:
    stream = wire.CohereStream(model="m", created=0, fallback_id="f")
    events = [
        {"type": "message-start", "id": "abc", "delta": {"message": {"role": "assistant"}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            "id": "f_1", "type": "function", "function": {"name": "f", "arguments": ""}}}}},
        {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": '{"a"'}}}}},
        {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": ": 1}"}}}}},
        {"type": "tool-call-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL",
                                          "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 7}}}},
    ]  # fmt: skip
    chunks = [c for e in events for c in stream.feed("", e)]
    assert all(c.id == "abc" for c in chunks) and stream.finished
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "I will"
    deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0]["id"] == "f_1" and deltas[0]["function"]["name"] == "f"
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"a": 1}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert stream.usage_chunk().usage.total_tokens == 12


# ---------------------------------------------------------------- over loopback HTTP


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCohere]:
    with FakeCohere() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeCohere) -> Iterator[FakeCohere]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as c:
        yield c


def provider(fake: FakeCohere) -> CohereProvider:
    return CohereProvider(ProviderSettings(name="cohere", type="cohere", base_url=fake.base_url))


def make_call(
    client, messages, model="command-a-03-2025", key=DEFAULT_KEY, **extra
) -> ProviderCall:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    request = ChatRequest.model_validate({"model": "c", "messages": messages, **extra})
    return ProviderCall(request, model, key, client, 5)


async def collect(fake, call) -> tuple[list[Any], str]:
    chunks = [c async for c in provider(fake).stream(call)]
    return chunks, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def fails(fake, call, *, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        if stream:
            async for _ in provider(fake).stream(call):
                pass
        else:
            await provider(fake).chat(call)
    return info.value


async def test_plain_multi_turn_and_system(fake, client):
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "one"},
                {"role": "assistant", "content": "ack"}, {"role": "user", "content": "two words"}]  # fmt: skip
    response = await provider(fake).chat(make_call(client, messages))
    assert response.choices[0].message.content == "echo: two words"
    assert response.choices[0].finish_reason == "stop"
    sent = fake.requests[-1]
    assert sent.path == "/v2/chat" and sent.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    assert sent.body["stream"] is False and sent.body["model"] == "command-a-03-2025"
    assert response.usage.prompt_tokens == 6 and response.usage.completion_tokens == 3


async def test_tools_round_trip(fake, client):
    first = await provider(fake).chat(make_call(client, "weather? call_two_tools", tools=[WEATHER]))
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.content == "I will use get_weather."
    calls = message.tool_calls
    assert [json.loads(c["function"]["arguments"])["n"] for c in calls] == [0, 1]
    history = [{"role": "user", "content": "weather? call_two_tools"},
               {"role": "assistant", "content": message.content, "tool_calls": calls},
               {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'},
               {"role": "tool", "tool_call_id": calls[1]["id"], "content": "rain"}]  # fmt: skip
    second = await provider(fake).chat(make_call(client, history, tools=[WEATHER]))
    assert second.choices[0].message.content.startswith("echo: result")
    assert fake.requests[-1].body["messages"][1]["tool_plan"] == "I will use get_weather."


async def test_images_need_a_vision_model(fake, client):
    content = [
        {"type": "text", "text": "what"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    response = await provider(fake).chat(
        make_call(client, [{"role": "user", "content": content}], "command-a-vision-07-2025")
    )
    assert response.choices[0].message.content == "echo: what [1 image]"
    error = await fails(
        fake, make_call(client, [{"role": "user", "content": content}]), stream=False
    )
    assert error.failure is FailureClass.BAD_REQUEST and "image" in error.message


async def test_streaming_text_and_usage(fake, client):
    fake.usage(cached_tokens=2)
    chunks, text = await collect(fake, make_call(client, "stream me please"))
    assert text == "echo: stream me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens_details == {"cached_tokens": 2}
    assert fake.requests[-1].body["stream"] is True


async def test_streaming_tool_calls(fake, client):
    chunks, text = await collect(
        fake, make_call(client, "call_tool", tools=[WEATHER], tool_choice="required")
    )
    assert text == "I will use get_weather."
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"].startswith(
        "get_weather_"
    )
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {
        "query": "call_tool",
        "n": 0,
    }
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_length_and_generation_errors(fake, client):
    response = await provider(fake).chat(make_call(client, "a b c d e", max_tokens=2))
    assert response.choices[0].finish_reason == "length"
    for stream in (False, True):
        error = await fails(fake, make_call(client, "generation_error"), stream=stream)
        assert error.failure is FailureClass.SERVER_ERROR and "ERROR" in error.message


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault.status(429, retry_after=2), FailureClass.RATE_LIMITED),
        (Fault.status(503), FailureClass.OVERLOADED), (Fault.status(500), FailureClass.SERVER_ERROR),
        (Fault.status(504), FailureClass.TIMEOUT), (Fault.status(401), FailureClass.AUTH),
        (Fault.status(498), FailureClass.AUTH), (Fault.status(400), FailureClass.BAD_REQUEST),
        (Fault.status(400, body=cohere_error(400, "too many tokens: size limit exceeded by 20 tokens.")),
         FailureClass.CONTEXT_LENGTH),
        (Fault.reset(), FailureClass.CONNECTION), (Fault.malformed_json(), FailureClass.SERVER_ERROR),
        (Fault.error_body_200(), FailureClass.SERVER_ERROR), (Fault.stall_after_first(), FailureClass.TIMEOUT),
    ],
    ids=str,
)  # fmt: skip
async def test_loopback_errors(fake, client, fault, failure, stream):
    fake.script(fault)
    call = make_call(client, "hello there friend")
    call.timeout = 0.3
    error = await fails(fake, call, stream=stream)
    assert error.failure is failure
    if failure is FailureClass.RATE_LIMITED:
        assert error.retry_after == 2.0


async def test_a_stream_cut_short_is_a_connection_failure(fake, client):
    fake.script(Fault.truncated_stream())
    received = []
    with pytest.raises(ProviderError) as info:
        async for chunk in provider(fake).stream(make_call(client, "a b c d e f")):
            received.append(chunk)
    assert received and info.value.failure is FailureClass.CONNECTION


async def test_a_wrong_key_is_auth_and_never_echoed(fake, client):
    bad = "co-wrong-key-abcdefghijkl"
    error = await fails(fake, make_call(client, "x", key=bad), stream=False)
    assert error.failure is FailureClass.AUTH and bad not in error.message
    error = await fails(fake, make_call(client, "x", key=None), stream=True)
    assert error.failure is FailureClass.AUTH


async def test_the_fake_rejects_what_cohere_rejects(fake, client):
    url = f"{fake.base_url}/v2/chat"
    headers = {"authorization": f"Bearer {DEFAULT_KEY}"}
    user = {"role": "user", "content": "x"}
    cases = [
        ({"model": "command-a", "messages": [user], "top_p": 0.5}, "unknown field"),
        ({"model": "command-a", "messages": [user, {"role": "tool", "tool_call_id": "zz", "content": "1"}]}, "tool_call_id"),
        ({"model": "command-a", "messages": [{"role": "assistant"}]}, "content or tool_calls"),
        ({"model": "command-a", "messages": [user], "tools": [{"type": "function", "function": {"name": "f"}}]}, "parameters"),
        ({"model": "command-a", "messages": [user], "tool_choice": "AUTO", "tools": [WEATHER]}, "tool_choice"),
        ({"model": "command-a", "messages": [user], "p": 1.0}, "between 0.01 and 0.99"),
    ]  # fmt: skip
    for payload, words in cases:
        reply = await client.post(url, json=payload, headers=headers)
        assert reply.status_code == 400 and words in reply.json()["message"], payload


# ---------------------------------------------------------------- through the engine


# the module itself, unless it is already a built-in
PLUGINS = [] if "turnout.plugins.providers.cohere" in DEFAULT_PLUGINS else [cohere_plugin]

POLICY = """
providers:
  cohere:
    type: cohere
    base_url: {cohere}
    api_key: {key}
    headers: {{x-fake-fault: "{cohere_fault}"}}
  openai:
    type: openai
    base_url: {openai}
    api_key: sk-openai-test
    headers: {{x-fake-fault: "{openai_fault}"}}
routes:
  - name: cohere-first
    match: {{model: cohere-first}}
    targets: [cohere/command-a]
    fallbacks: [openai/gpt-4o-mini]
    retry: {{attempts: 2, backoff: 1ms, max_backoff: 10ms}}
  - name: openai-first
    match: {{model: openai-first}}
    targets: [openai/gpt-4o-mini]
    fallbacks: [cohere/command-a]
    retry: {{attempts: 1}}
"""


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


def engine_for(make_engine, fake, fake_openai, cohere_fault="ok", openai_fault="ok"):
    text = POLICY.format(cohere=fake.base_url, key=DEFAULT_KEY, openai=fake_openai.base_url,
                         cohere_fault=cohere_fault, openai_fault=openai_fault)  # fmt: skip
    return make_engine(text, plugins=PLUGINS)


def request(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def test_the_engine_serves_cohere_with_cost(make_engine, fake, fake_openai):
    engine = engine_for(make_engine, fake, fake_openai)
    response = await engine.chat(request("cohere-first", "hello engine"))
    assert response.choices[0].message.content == "echo: hello engine"
    extra = response.extra_fields
    assert extra.provider == "cohere" and extra.billed_usage.prompt_tokens == 2
    assert extra.cost is not None and extra.cost > 0
    stream = engine.stream(request("cohere-first", "call_tool", tools=[WEATHER]))
    chunks = [c async for c in stream]
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert stream.extra_fields.provider == "cohere" and stream.extra_fields.cost > 0


@pytest.mark.parametrize("fault", ["status:429", "status:503", "status:500"])
@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_cohere_failures_fall_back_to_openai(
    make_engine, fake, fake_openai, fault, streaming
):
    engine = engine_for(make_engine, fake, fake_openai, cohere_fault=fault)
    body_ = request("cohere-first", "call_tool now", tools=[WEATHER])
    if streaming:
        stream = engine.stream(body_)
        chunks = [c async for c in stream]
        assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
        extra = stream.extra_fields
    else:
        extra = (await engine.chat(body_)).extra_fields
    failure = {
        "status:429": "rate_limited",
        "status:503": "overloaded",
        "status:500": "server_error",
    }[fault]
    assert [(a.provider, a.outcome) for a in extra.attempts] == [("cohere", failure)] * 2 + [
        ("openai", "ok")
    ]


@pytest.mark.parametrize("fault", ["status:429", "status:503", "status:500"])
async def test_openai_failures_fall_back_to_cohere(make_engine, fake, fake_openai, fault):
    engine = engine_for(make_engine, fake, fake_openai, openai_fault=fault)
    stream = engine.stream(request("openai-first", "call_tool now", tools=[WEATHER]))
    chunks = [c async for c in stream]
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert [a.provider for a in stream.extra_fields.attempts] == ["openai", "cohere"]


async def test_a_bad_request_is_not_retried_elsewhere(make_engine, fake, fake_openai):
    engine = engine_for(make_engine, fake, fake_openai, cohere_fault="status:400")
    with pytest.raises(TurnoutError) as info:
        await engine.chat(request("cohere-first", "x"))
    assert info.value.status_code == 400 and fake_openai.requests == []


EMBED_POLICY = """
providers:
  cohere: {{type: cohere, base_url: {cohere}, api_key: {key}}}
  openai: {{type: openai, base_url: {openai}, api_key: sk-openai-test}}
routes:
  - name: embed
    match: {{model: embed}}
    targets: [cohere/embed-v4.0]
    fallbacks: [openai/text-embedding-3-small]
    retry: {{attempts: 1}}
  - name: direct
    match: {{model: "*/*"}}
"""


@pytest.fixture
def embedder(make_engine, fake, fake_openai):
    text = EMBED_POLICY.format(cohere=fake.base_url, key=DEFAULT_KEY, openai=fake_openai.base_url)
    return make_engine(text, plugins=PLUGINS)


async def test_embeddings_in_batches_of_96_billed_by_cohere(embedder, fake):
    texts = [f"doc {i}" for i in range(100)]
    answer = await embedder.embeddings.create(
        {"model": "embed", "input": texts, "dimensions": 256, "input_type": "search_query"}
    )
    sent = [r for r in fake.requests if r.path == "/v2/embed"]
    assert [len(r.body["texts"]) for r in sent] == [96, 4]
    assert sent[0].body == {
        "model": "embed-v4.0",
        "texts": texts[:96],
        "input_type": "search_query",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    assert len(answer["data"]) == 100 and len(answer["data"][99]["embedding"]) == 256
    assert answer["data"][99]["embedding"] == pytest.approx(embed("doc 99", 256))
    assert answer["usage"]["prompt_tokens"] == 200  # Cohere's billed_units
    extra = answer["extra_fields"]
    assert extra["provider"] == "cohere" and extra["cost"] == pytest.approx(200 * 0.12 / 1e6)


async def test_cohere_embeddings_default_to_search_document_and_fall_back(
    embedder, fake, fake_openai
):
    await embedder.embeddings.create({"model": "cohere/embed-english-v3.0", "input": "x"})
    assert fake.requests[-1].body["input_type"] == "search_document"
    fake.script(Fault.status(429))
    answer = await embedder.embeddings.create({"model": "embed", "input": "x"})
    assert answer["extra_fields"]["provider"] == "openai"
    with pytest.raises(TurnoutError, match="output_dimension") as info:
        await embedder.embeddings.create(
            {"model": "cohere/embed-english-v3.0", "input": "x", "dimensions": 256}
        )
    assert info.value.status_code == 400
