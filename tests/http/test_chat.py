"""Chat completions through the gateway, with the official openai SDK as the client."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from turnout import ChatResponse, Provider, ProviderCall, hookimpl
from turnout.wire.chat import Choice, ResponseMessage, Usage

from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import RunningGateway, start_gateway

HELLO = [{"role": "user", "content": "hello gateway"}]


def test_plain_completion_returns_the_mock_reply_and_extra_fields(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello gateway"
    assert completion.usage is not None and completion.usage.total_tokens == 4
    extra = completion.model_extra["extra_fields"]  # type: ignore[index]
    assert extra["provider"] == "mock"
    assert extra["route"] == "smart"
    assert extra["model_requested"] == "smart"
    assert [a["outcome"] for a in extra["attempts"]] == ["ok"]
    assert raw.headers["x-turnout-provider"] == "mock"
    assert raw.headers["x-turnout-model"] == "echo"
    assert raw.headers["x-turnout-route"] == "smart"
    assert raw.headers["x-turnout-attempts"] == "1"
    assert float(raw.headers["x-turnout-overhead-ms"]) >= 0
    assert extra["request_id"] == raw.headers["x-request-id"]


def test_a_request_id_sent_by_the_client_is_honoured(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=HELLO, extra_headers={"x-request-id": "trace-42"}
    )
    assert raw.headers["x-request-id"] == "trace-42"
    assert raw.parse().model_extra["extra_fields"]["request_id"] == "trace-42"  # type: ignore[index]


def test_fallback_is_visible_in_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="rescued", messages=HELLO)
    assert raw.headers["x-turnout-attempts"] == "2"
    assert raw.headers["x-turnout-provider"] == "mock"
    assert raw.headers["x-turnout-model"] == "rescuer"
    assert raw.parse().choices[0].message.content == "hello gateway"


def test_streaming_yields_the_text_and_ends_with_done(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="smart", messages=HELLO, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello gateway"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_streaming_with_include_usage_ends_with_usage_and_extra_fields(
    client: openai.OpenAI,
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-turnout-provider"] == "mock"
    chunks = list(raw.parse())
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 2
    extra = last.model_extra["extra_fields"]  # type: ignore[index]
    assert extra["provider"] == "mock" and extra["route"] == "smart"


def test_the_sse_body_is_openai_shaped(gateway: RunningGateway) -> None:
    body = {"model": "smart", "messages": HELLO, "stream": True}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    for data in events[:-1]:
        assert data.startswith("data: ")
        assert json.loads(data[6:])["object"] == "chat.completion.chunk"


TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "smart", "messages": HELLO},
        {"model": "upstream", "messages": HELLO},  # OpenAI's first chunk has "refusal": null
        {
            "model": "upstream",
            "messages": [{"role": "user", "content": "call_tool"}],
            "tools": TOOLS,
        },
    ],
    ids=["mock", "openai", "openai-tool-call"],
)
def test_sse_chunks_leave_out_what_the_delta_does_not_carry(
    gateway: RunningGateway, body: dict[str, Any]
) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", json={**body, "stream": True})
    events = [e[len(b"data: ") :] for e in response.content.split(b"\n\n") if e][:-1]
    assert len(events) >= 3
    for data in events:
        assert b'"refusal":null' not in data and b'"tool_calls":null' not in data
        for choice in json.loads(data)["choices"]:
            assert {"index", "finish_reason", "logprobs", "delta"} <= choice.keys()
            assert None not in choice["delta"].values()
    first = json.loads(events[0])["choices"][0]
    assert first["finish_reason"] is None and first["delta"]["role"] == "assistant"
    last = json.loads(events[-1])["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] in ("stop", "tool_calls")


def test_tool_calls_pass_through_an_openai_upstream(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    completion = client.chat.completions.create(
        model="upstream",
        messages=[{"role": "user", "content": "please call_tool"}],
        tools=TOOLS,
        tool_choice="auto",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    sent = fake.requests[-1].body
    assert sent["model"] == "gpt-4o"
    assert sent["tools"] == TOOLS
    assert sent["tool_choice"] == "auto"


def test_streamed_tool_calls_pass_through(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="upstream",
        messages=[{"role": "user", "content": "please call_tool"}],
        tools=TOOLS,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_unknown_request_fields_are_passed_through(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    client.chat.completions.create(
        model="upstream", messages=HELLO, extra_body={"vendor_knob": {"depth": 3}}
    )
    assert fake.requests[-1].body["vendor_knob"] == {"depth": 3}


class _Multi(Provider):
    """Answers with ``n`` choices, like an upstream that honours ``n``."""

    ids = itertools.count()

    async def chat(self, call: ProviderCall) -> ChatResponse:
        n = call.request.n or 1
        return ChatResponse(
            id=f"multi-{next(self.ids)}",
            model=call.model,
            choices=[
                Choice(
                    index=i, message=ResponseMessage(content=f"answer {i}"), finish_reason="stop"
                )
                for i in range(n)
            ],
            usage=Usage(prompt_tokens=1, completion_tokens=n, total_tokens=n + 1),
        )


class _MultiPlugin:
    @hookimpl
    def turnout_register_providers(self, register: Any) -> None:
        register("multi", _Multi)


def test_n_greater_than_one_returns_every_choice(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text("version: 1\nproviders:\n  multi: {type: multi}\n")
    gateway = start_gateway(policy, plugins=(_MultiPlugin(),))
    try:
        completion = gateway.client().chat.completions.create(model="multi/m", messages=HELLO, n=3)
    finally:
        gateway.stop()
    assert [c.message.content for c in completion.choices] == ["answer 0", "answer 1", "answer 2"]
    assert [c.index for c in completion.choices] == [0, 1, 2]


def test_n_is_sent_upstream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    client.chat.completions.create(model="upstream", messages=HELLO, n=2)
    assert fake.requests[-1].body["n"] == 2
