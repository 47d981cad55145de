"""The ``bedrock`` provider over loopback HTTP against ``FakeBedrock`` (Converse
JSON, ConverseStream event-stream frames, SigV4 checked by recomputing the
signature with botocore), through the engine, plus properties of the pure
translation in ``bedrock_wire``."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("botocore", reason="the bedrock provider needs botocore (optional dependency)")

import httpx2 as httpx
import turnout.plugins.providers.bedrock as bedrock_plugin
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout import PolicyError, TurnoutError
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.contract.registry import DEFAULT_PLUGINS
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import bedrock_wire as wire
from turnout.plugins.providers.bedrock import BedrockOptions, BedrockProvider
from turnout.wire.chat import ChatRequest

from tests.conftest import user
from tests.fakes.bedrock_upstream import (
    AwsCredentials,
    FakeBedrock,
    StreamException,
    model_path,
    stream_events,
)
from tests.fakes.faults import Fault
from tests.fakes.openai_embeddings import embed
from tests.fakes.openai_upstream import FakeOpenAI

CREDS = AwsCredentials(
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "session-token-1"
)
PLAIN = AwsCredentials("AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY")
API_KEY = "bedrock-api-key-0123456789"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
# passed explicitly until the module is a built-in (turnout.contract.registry.DEFAULT_PLUGINS)
PLUGINS = [] if "turnout.plugins.providers.bedrock" in DEFAULT_PLUGINS else [bedrock_plugin]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock(
        region="eu-west-1", credentials=[CREDS, PLAIN], api_keys=[API_KEY]
    ) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


def policy(
    url: str, creds: AwsCredentials = CREDS, region: str = "eu-west-1", extra: str = ""
) -> str:
    token = f", session_token: {creds.session_token}" if creds.session_token else ""
    return f"""
    providers:
      br:
        type: bedrock
        base_url: {url}
        options: {{region: {region}, access_key_id: {creds.access_key_id}, secret_access_key: "{creds.secret_access_key}"{token}}}
      oa: {{type: openai, base_url: "{{openai}}", api_key: sk-oa}}
    routes:
      - name: r
        match: {{model: r}}
        targets: [br/{MODEL}]
        fallbacks: [oa/gpt-4o-mini]
        retry: {{attempts: 1}}
      - name: back
        match: {{model: back}}
        targets: [oa/gpt-4o]
        fallbacks: [br/{MODEL}]
        retry: {{attempts: 1}}
      - name: direct
        match: {{model: "*/*"}}
    {extra}
    """


@pytest.fixture
def engine(make_engine, fake, fake_openai):
    fake.reset()
    fake_openai.reset()

    def build(creds: AwsCredentials = CREDS, region: str = "eu-west-1"):
        text = policy(fake.base_url, creds, region).replace("{openai}", fake_openai.base_url)
        return make_engine(text, plugins=PLUGINS)

    return build


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -------------------------------------------------------------------------- basics


async def test_plain_chat_is_signed_with_sigv4(engine, fake):
    response = await engine().chat(user("hello bedrock", model=f"br/{MODEL}"))
    assert response.choices[0].message.content == "echo: hello bedrock"
    assert response.choices[0].finish_reason == "stop"
    sent = fake.requests[-1]
    assert sent.path == model_path(MODEL)
    auth = sent.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={CREDS.access_key_id}/")
    assert "/eu-west-1/bedrock/aws4_request" in auth and "SignedHeaders=" in auth
    assert sent.headers["x-amz-security-token"] == CREDS.session_token
    assert sent.body == {"messages": [{"role": "user", "content": [{"text": "hello bedrock"}]}]}
    assert response.usage.prompt_tokens == 2 and response.usage.completion_tokens == 3
    assert response.extra_fields.cost is not None and response.extra_fields.cost > 0


async def test_credentials_without_a_session_token(engine, fake):
    response = await engine(PLAIN).chat(user(model=f"br/{MODEL}"))
    assert response.choices[0].message.content
    assert "x-amz-security-token" not in fake.requests[-1].headers


@pytest.mark.parametrize(
    ("creds", "region", "code"),
    [
        (
            AwsCredentials(CREDS.access_key_id, "wrong-secret-0123456789", CREDS.session_token),
            "eu-west-1",
            "InvalidSignatureException",
        ),
        (
            AwsCredentials("AKIAUNKNOWN000000000", "secret-0123456789"),
            "eu-west-1",
            "UnrecognizedClientException",
        ),
        (CREDS, "us-west-2", "InvalidSignatureException"),
    ],
    ids=["bad-secret", "unknown-key", "wrong-region"],
)
async def test_bad_signatures_are_auth_failures_and_fall_back(engine, creds, region, code):
    response = await engine(creds, region).chat(user(model="r"))
    first = response.extra_fields.attempts[0]
    assert (first.provider, first.outcome) == ("br", "auth")
    assert code in (first.message or "")
    assert "wrong-secret" not in (first.message or "")
    assert response.extra_fields.provider == "oa"


async def test_system_and_multi_turn(engine, fake):
    request = {
        "model": f"br/{MODEL}",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"},
            {"role": "user", "content": [{"type": "text", "text": "third"}]},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 100,
        "stop": ["END"],
    }
    response = await engine().chat(request)
    assert response.choices[0].message.content == "echo: second third"
    body = fake.requests[-1].body
    assert body["system"] == [{"text": "You are terse."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [{"text": "second"}, {"text": "third"}]
    assert body["inferenceConfig"] == {
        "maxTokens": 100,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
    }


async def test_max_tokens_stop_is_length(engine):
    response = await engine().chat(
        user("one two three four five", model=f"br/{MODEL}", max_tokens=2)
    )
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content == "echo: one"


async def test_tools_round_trip(engine, fake):
    built = engine()
    first = await built.chat(
        user("please call_tool", model=f"br/{MODEL}", tools=TOOLS, tool_choice="required")
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"query": "echo"}
    assert fake.requests[-1].body["toolConfig"]["toolChoice"] == {"any": {}}
    spec = fake.requests[-1].body["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["inputSchema"]["json"] == TOOLS[0]["function"]["parameters"]

    history = [
        {"role": "user", "content": "please call_tool"},
        {"role": "assistant", "content": message.content, "tool_calls": message.tool_calls},
        {"role": "tool", "tool_call_id": call["id"], "content": "42 apples"},
    ]
    second = await built.chat({"model": f"br/{MODEL}", "messages": history, "tools": TOOLS})
    assert second.choices[0].message.content == "tool said: 42 apples"
    sent = fake.requests[-1].body["messages"]
    assert sent[1]["content"][1]["toolUse"]["toolUseId"] == call["id"]
    assert sent[2]["content"][0]["toolResult"]["toolUseId"] == call["id"]


async def test_a_history_with_tool_calls_but_no_tools_still_declares_them(engine, fake):
    history = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "done"},
    ]
    response = await engine().chat({"model": f"br/{MODEL}", "messages": history})
    assert response.choices[0].message.content == "tool said: done"
    assert fake.requests[-1].body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "f"


async def test_images_as_data_urls(engine, fake):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    response = await engine().chat(
        {"model": f"br/{MODEL}", "messages": [{"role": "user", "content": content}]}
    )
    assert response.choices[0].message.content == "echo: what is this [1 image]"
    image = fake.requests[-1].body["messages"][0]["content"][1]["image"]
    assert image == {"format": "png", "source": {"bytes": PNG}}


async def test_an_http_image_url_is_a_bad_request_without_any_call(engine, fake):
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(TurnoutError) as info:
        await engine().chat(
            {"model": f"br/{MODEL}", "messages": [{"role": "user", "content": content}]}
        )
    assert info.value.status_code == 400 and "data: URLs" in info.value.message
    assert fake.requests == []


async def test_a_request_bedrock_rejects_is_a_bad_request(engine, fake):
    with pytest.raises(TurnoutError) as info:
        await engine().chat(
            {"model": f"br/{MODEL}", "messages": [{"role": "assistant", "content": "hi"}]}
        )
    assert info.value.status_code == 400
    assert "must start with a user message" in info.value.message


# -------------------------------------------------------------------------- streaming


async def test_streaming_text_with_usage(engine, fake):
    stream = engine().stream(user("stream from bedrock", model=f"br/{MODEL}", stream=True))
    chunks = [c async for c in stream]
    assert text_of(chunks) == "echo: stream from bedrock"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert stream.extra_fields.billed_usage.completion_tokens == 4
    sent = fake.requests[-1]
    assert sent.path == model_path(MODEL, "converse-stream")
    assert sent.headers["accept"] == "application/vnd.amazon.eventstream"


async def test_streaming_tool_calls(engine):
    stream = engine().stream(user("call_tool now", model=f"br/{MODEL}", tools=TOOLS, stream=True))
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0]["id"].startswith("tooluse_") and calls[0]["function"]["name"] == "lookup"
    arguments = "".join(tc["function"].get("arguments", "") for tc in calls)
    assert json.loads(arguments) == {"query": "echo"}
    assert {tc["index"] for tc in calls} == {0}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_usage_counts_cache_tokens_once(engine, fake):
    fake.cache_tokens(read=100, write=20)
    response = await engine().chat(user("cache me", model=f"br/{MODEL}"))
    usage = response.usage
    assert usage.prompt_tokens == 2 + 100 + 20
    assert usage.prompt_tokens_details == {"cached_tokens": 100, "cache_creation_tokens": 20}
    stream = engine().stream(
        user("cache me", model=f"br/{MODEL}", stream=True, stream_options={"include_usage": True})
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage.prompt_tokens == 122 and chunks[-1].choices == []


# -------------------------------------------------------------------------- errors


@pytest.fixture
async def direct(fake):
    fake.reset()
    provider = BedrockProvider(
        ProviderSettings(
            name="br",
            type="bedrock",
            base_url=fake.base_url,
            options=BedrockOptions(
                region="eu-west-1",
                access_key_id=PLAIN.access_key_id,
                secret_access_key=PLAIN.secret_access_key,
            ),
        )
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
        request = ChatRequest.model_validate(user("a b c d e", model="x"))
        yield provider, ProviderCall(request, MODEL, None, client, 2.0)


async def fails(provider, call, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        if stream:
            async for _ in provider.stream(call):
                pass
        else:
            await provider.chat(call)
    return info.value


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault.status(429), FailureClass.RATE_LIMITED),
        (
            Fault.status(
                429, body={"__type": "ModelNotReadyException", "message": "Model is not ready"}
            ),
            FailureClass.OVERLOADED,
        ),
        (Fault.status(503), FailureClass.OVERLOADED),
        (Fault.status(500), FailureClass.SERVER_ERROR),
        (Fault.status(424), FailureClass.SERVER_ERROR),
        (Fault.status(408), FailureClass.TIMEOUT),
        (Fault.status(403), FailureClass.AUTH),
        (Fault.status(400), FailureClass.BAD_REQUEST),
        (
            Fault.status(
                400,
                body={
                    "__type": "ValidationException",
                    "message": "Input is too long for requested model.",
                },
            ),
            FailureClass.CONTEXT_LENGTH,
        ),
        (
            Fault.status(400, body={"__type": "ServiceQuotaExceededException", "message": "quota"}),
            FailureClass.RATE_LIMITED,
        ),
        (Fault.reset(), FailureClass.CONNECTION),
        (Fault.truncated_stream(), FailureClass.CONNECTION),
        (Fault.stall_after_first(), FailureClass.TIMEOUT),
    ],
    ids=str,
)
async def test_errors_are_classified(direct, fake, fault, failure, stream):
    provider, call = direct
    fake.script(fault)
    call.timeout = 0.5
    error = await fails(provider, call, stream)
    assert error.failure is failure


async def test_a_corrupt_frame_is_a_server_error(direct, fake):
    provider, call = direct
    fake.script(Fault.malformed_json())
    error = await fails(provider, call, stream=True)
    assert error.failure is FailureClass.SERVER_ERROR
    assert "event stream" in error.message


@pytest.mark.parametrize(
    ("name", "failure"),
    [
        ("throttlingException", FailureClass.RATE_LIMITED),
        ("serviceUnavailableException", FailureClass.OVERLOADED),
        ("internalServerException", FailureClass.SERVER_ERROR),
        ("modelStreamErrorException", FailureClass.SERVER_ERROR),
        ("validationException", FailureClass.BAD_REQUEST),
    ],
)
async def test_exception_events_mid_stream(direct, fake, name, failure):
    provider, call = direct
    fake.script(StreamException(name, "something went wrong"))
    received = []
    with pytest.raises(ProviderError) as info:
        async for chunk in provider.stream(call):
            received.append(chunk)
    assert received  # the events before the exception were passed on
    assert info.value.failure is failure and name in info.value.message


async def test_bearer_api_key_without_access_keys(make_engine, fake):
    fake.reset()
    text = f"""
    providers:
      br: {{type: bedrock, base_url: "{fake.base_url}", api_key: {API_KEY}, options: {{region: eu-west-1}}}}
    routes: [{{name: d, match: {{model: "*/*"}}}}]
    """
    response = await make_engine(text, plugins=PLUGINS).chat(user(model=f"br/{MODEL}"))
    assert response.choices[0].message.content
    assert fake.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


# -------------------------------------------------------------------------- cross-vendor


@pytest.mark.parametrize(
    "fault", [Fault.status(429), Fault.status(503), Fault.status(500)], ids=str
)
async def test_bedrock_failures_fall_back_to_openai_streaming(engine, fake, fault):
    fake.script(fault)
    stream = engine().stream(user("over to openai", model="r", stream=True, tools=TOOLS))
    chunks = [c async for c in stream]
    assert text_of(chunks) == "echo: over to openai"
    assert [(a.provider, a.outcome != "ok") for a in stream.extra_fields.attempts] == [
        ("br", True),
        ("oa", False),
    ]


async def test_openai_failure_falls_back_to_bedrock_with_tools(engine, fake_openai):
    fake_openai.script(Fault.status(429))
    stream = engine().stream(user("call_tool please", model="back", stream=True, tools=TOOLS))
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls and calls[0]["function"]["name"] == "lookup"
    assert stream.extra_fields.provider == "br"


# -------------------------------------------------------------------------- loading


def test_the_module_imports_without_botocore():
    code = (
        "import sys; sys.modules['botocore'] = None\n"
        "import turnout.plugins.providers.bedrock as b\n"
        "from turnout.contract.provider import ProviderSettings\n"
        "try:\n"
        "    b.BedrockProvider(ProviderSettings(name='b', type='bedrock', options={'region': 'us-east-1'}))\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install botocore" in result.stdout


def test_missing_botocore_is_a_policy_problem(make_engine, monkeypatch):
    monkeypatch.setattr(bedrock_plugin, "SigV4Auth", None)
    text = """
    providers:
      br: {type: bedrock, options: {region: us-east-1, access_key_id: A, secret_access_key: B}}
    routes: [{name: d, match: {model: "*/*"}}]
    """
    with pytest.raises(PolicyError) as info:
        make_engine(text, plugins=PLUGINS)
    assert "needs botocore" in str(info.value) and "pip install botocore" in str(info.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("{access_key_id: A, secret_access_key: B}", "region"),
        ("{region: us-east-1, access_key_id: A}", "both access_key_id and secret_access_key"),
        ("{region: us-east-1, acces_key_id: A}", "acces_key_id"),
    ],
)
def test_bad_options_are_policy_problems(make_engine, options, words):
    text = f"providers:\n  br: {{type: bedrock, options: {options}}}\nroutes: [{{name: d, match: {{model: '*/*'}}}}]\n"
    with pytest.raises(PolicyError) as info:
        make_engine(text, plugins=PLUGINS)
    assert words in str(info.value)


async def test_without_any_credentials_the_call_is_an_auth_failure(fake):
    provider = BedrockProvider(
        ProviderSettings(
            name="br", type="bedrock", base_url=fake.base_url, options={"region": "eu-west-1"}
        )
    )
    async with httpx.AsyncClient() as client:
        call = ProviderCall(ChatRequest.model_validate(user(model="x")), MODEL, None, client, 1.0)
        error = await fails(provider, call, stream=False)
    assert error.failure is FailureClass.AUTH


# -------------------------------------------------------------------------- translation


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reasons(reason, finish):
    assert wire.finish_reason(reason) == finish


_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
).filter(lambda s: s.strip())
_name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)
_args = st.dictionaries(_name, st.one_of(st.integers(), _text, st.booleans()), max_size=3)


@st.composite
def conversations(draw) -> list[dict[str, Any]]:
    """Valid OpenAI conversations: user turns, assistant turns (text and/or tool
    calls), each tool call answered by a tool message."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(_text)}]
    for turn in range(draw(st.integers(0, 3))):
        calls = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": draw(_name), "arguments": json.dumps(draw(_args))},
            }
            for i in range(draw(st.integers(0, 2)))
        ]
        content = draw(st.one_of(st.none(), _text)) if calls else draw(_text)
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            assistant["tool_calls"] = calls
        messages.append(assistant)
        messages += [
            {"role": "tool", "tool_call_id": c["id"], "content": draw(_text)} for c in calls
        ]
        messages.append({"role": "user", "content": draw(_text)})
    return messages


@settings(max_examples=60, deadline=None)
@given(conversations())
def test_round_trip_keeps_messages_and_tool_calls(messages):
    request = ChatRequest.model_validate({"model": "m", "messages": messages})
    body = wire.to_converse(request)
    turns = body["messages"]
    roles = [t["role"] for t in turns]
    assert roles[0] == "user" and all(a != b for a, b in itertools.pairwise(roles))
    assistants = iter(m for m in messages if m["role"] == "assistant")
    for turn in turns:
        if turn["role"] != "assistant":
            continue
        original = next(assistants)
        # what Bedrock would answer with this turn comes back as the OpenAI message
        back = wire.from_converse(
            {"output": {"message": turn}, "stopReason": "end_turn"},
            response_id="x",
            model="m",
            created=0,
        )["choices"][0]["message"]
        assert back["content"] == original["content"]
        calls = back.get("tool_calls") or []
        assert [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
        ] == [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in original.get("tool_calls") or []
        ]
    results = [b["toolResult"] for t in turns for b in t["content"] if "toolResult" in b]
    tools = [m for m in messages if m["role"] == "tool"]
    assert [(r["toolUseId"], r["content"][0]["text"]) for r in results] == [
        (m["tool_call_id"], m["content"]) for m in tools
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(_text.map(lambda t: {"text": t}), st.tuples(_name, _args)), min_size=1, max_size=4
    )
)
def test_stream_events_rebuild_the_same_message_as_converse(blocks):
    content = [
        b
        if isinstance(b, dict)
        else {"toolUse": {"toolUseId": f"t{i}", "name": b[0], "input": b[1]}}
        for i, b in enumerate(blocks)
    ]
    reply = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use" if any("toolUse" in b for b in content) else "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8},
        "metrics": {"latencyMs": 1},
    }
    expected = wire.from_converse(reply, response_id="x", model="m", created=0)
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(stream_events(reply)))
    state = wire.ConverseStreamState(response_id="x", model="m", created=0)
    chunks = [
        c for m in buffer for c in state.dicts(m.headers[":event-type"], json.loads(m.payload))
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for tc in (c["choices"][0]["delta"].get("tool_calls") or []) if c["choices"] else []:
            entry = calls.setdefault(tc["index"], {"id": tc.get("id"), "name": "", "arguments": ""})
            entry["name"] += tc["function"].get("name", "")
            entry["arguments"] += tc["function"].get("arguments", "")
    message = expected["choices"][0]["message"]
    assert text == (message["content"] or "")
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls") or []
    ]
    assert state.finished and chunks[-1]["usage"] == expected["usage"]


async def test_reasoning_effort_becomes_claude_thinking(engine, fake):
    model = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    asked = user("think", model=f"br/{model}", reasoning_effort="high", temperature=0.3)
    response = await engine().chat(asked)
    sent = fake.requests[-1].body
    assert sent["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 16_384}
    }
    assert (
        sent["inferenceConfig"]["maxTokens"] > 16_384
        and "temperature" not in sent["inferenceConfig"]
    )
    assert response.choices[0].message.content == "echo: think"


# -------------------------------------------------------------------------- embeddings

TITAN = "amazon.titan-embed-text-v2:0"


async def test_titan_embeds_one_text_a_call_signed_and_billed(engine, fake):
    texts = [f"titan text {i}" for i in range(10)]
    answer = await engine().embeddings.create(
        {"model": f"br/{TITAN}", "input": texts, "dimensions": 256}
    )
    sent = [r for r in fake.requests if r.path.endswith("/invoke")]
    assert len(sent) == 10
    assert sent[0].path == "/model/amazon.titan-embed-text-v2:0/invoke"
    assert sorted(r.body["inputText"] for r in sent) == sorted(texts)
    assert all(r.body["dimensions"] == 256 for r in sent)
    assert sent[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert [len(d["embedding"]) for d in answer["data"]] == [256] * 10
    assert answer["data"][7]["embedding"] == pytest.approx(embed("titan text 7", 256))
    assert answer["usage"]["prompt_tokens"] == 30  # Bedrock's input token count header
    assert answer["extra_fields"]["cost"] == pytest.approx(30 * 0.02 / 1e6)


async def test_cohere_on_bedrock_in_batches_of_96(engine, fake):
    texts = [f"c {i}" for i in range(100)]
    answer = await engine().embeddings.create(
        {"model": "br/cohere.embed-english-v3", "input": texts, "input_type": "search_query"}
    )
    sent = [r for r in fake.requests if r.path.endswith("/invoke")]
    assert [len(r.body["texts"]) for r in sent] == [96, 4]
    assert sent[0].body["input_type"] == "search_query"
    assert sent[0].body["embedding_types"] == ["float"]
    assert answer["data"][99]["embedding"] == pytest.approx(embed("c 99", 1024))
    assert answer["usage"]["prompt_tokens"] == 200


async def test_bedrock_embedding_failures_fall_back_and_bad_requests_are_400s(
    make_engine, fake, fake_openai
):
    fake.reset()
    fake_openai.reset()
    extra = f"""
      - name: embed
        match: {{model: embed}}
        targets: [br/{TITAN}]
        fallbacks: [oa/text-embedding-3-small]
        retry: {{attempts: 1}}
    """
    text = policy(fake.base_url).replace("{openai}", fake_openai.base_url)
    text = text.replace("    routes:\n", "    routes:\n" + extra.strip("\n") + "\n", 1)
    built = make_engine(text, plugins=PLUGINS)
    fake.script(Fault.status(429))
    answer = await built.embeddings.create({"model": "embed", "input": "throttled"})
    assert answer["extra_fields"]["provider"] == "oa"
    with pytest.raises(TurnoutError, match="not a Bedrock embedding model") as info:
        await built.embeddings.create({"model": f"br/{MODEL}", "input": "x"})
    assert info.value.status_code == 400
    with pytest.raises(TurnoutError, match="dimensions") as info:
        await built.embeddings.create({"model": f"br/{TITAN}", "input": "x", "dimensions": 8})
    assert info.value.status_code == 400
