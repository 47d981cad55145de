"""The pure OpenAI ⇄ Anthropic translation (``turnout.plugins.providers.anthropic_wire``).

Anthropic shapes are those of the Messages API reference / the official SDK's
types; requests built here are checked with the fake upstream's validator,
which rejects what the real API rejects.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import anthropic_wire as wire
from turnout.wire.chat import ChatRequest

from tests.fakes.anthropic_wire import Rejection, validate_messages_request

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def body_for(request: dict[str, Any], *, model: str = "claude-sonnet-4-5", **kw: Any) -> dict:
    parsed = ChatRequest.model_validate({"model": "m", **request})
    body = wire.messages_body(parsed, model, max_tokens=kw.pop("max_tokens", 1024), **kw)
    validate_messages_request(body)  # what the real API would accept
    return body


def refused(request: dict[str, Any]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        wire.messages_body(ChatRequest.model_validate({"model": "m", **request}), "c", max_tokens=9)
    assert caught.value.failure is FailureClass.BAD_REQUEST
    return caught.value


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# --------------------------------------------------------------------------
# requests
# --------------------------------------------------------------------------


def test_system_and_developer_messages_are_hoisted_in_order():
    body = body_for(
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "assistant", "content": "salut"},
                {"role": "user", "content": "again"},
            ]
        }
    )
    assert body["system"] == [
        {"type": "text", "text": "Be terse."},
        {"type": "text", "text": "Use French."},
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_consecutive_same_role_messages_are_merged_into_one_turn():
    body = body_for(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "three"},
            ]
        }
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "user", "content": "three"},
    ]


def test_tool_calls_and_tool_messages_become_tool_use_and_tool_result_blocks():
    body = body_for(
        {
            "messages": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "rain"}],
                },
                {"role": "user", "content": "thanks"},
            ],
            "tools": [WEATHER],
        }
    )
    assistant, results = body["messages"][1], body["messages"][2]
    assert assistant["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_2",
             "content": [{"type": "text", "text": "rain"}]},
            {"type": "text", "text": "thanks"},
        ],
    }  # fmt: skip
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None,
         {"type": "tool", "name": "get_weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)  # fmt: skip
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected):
    request = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    assert body_for(request).get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent():
    body = body_for({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"})
    assert "tool_choice" not in body and "tools" not in body


def test_images_data_urls_become_base64_sources_and_http_urls_url_sources():
    body = body_for(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "compare"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
                    ],
                }
            ]
        }
    )  # fmt: skip
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]


def test_sampling_fields_are_translated_and_unsupported_ones_dropped():
    body = body_for(
        {
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 1.7,
            "top_p": 0.9,
            "stop": "END",
            "user": "user-42",
            "seed": 3,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.5,
            "logit_bias": {"1": 2},
            "metadata": {"team": "a"},
            "max_completion_tokens": 77,
            "top_k": 5,
        }
    )
    assert body["temperature"] == 1.0  # clamped to Anthropic's 0..1
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["max_tokens"] == 77
    assert body["top_k"] == 5
    for dropped in ("seed", "presence_penalty", "frequency_penalty", "logit_bias", "user"):
        assert dropped not in body


def test_json_schema_response_format_becomes_output_config():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = body_for(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": schema},
            },
        }
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_max_tokens_defaults():
    assert wire.default_max_tokens("claude-3-haiku-20240307", stream=True) == 4096
    assert wire.default_max_tokens("claude-3-5-sonnet-latest", stream=False) == 8192
    assert wire.default_max_tokens("claude-sonnet-4-5", stream=True) == 64_000
    assert wire.default_max_tokens("claude-sonnet-4-5", stream=False) == 21_333
    assert wire.default_max_tokens("claude-opus-4", stream=True) == 32_000
    assert wire.default_max_tokens("some-new-model", stream=True) == 4096
    assert wire.default_max_tokens("claude-sonnet-4-5", stream=True, configured=100) == 100
    body = body_for({"messages": [{"role": "user", "content": "x"}], "max_tokens": 12})
    assert body["max_tokens"] == 12


def test_assistant_prefill_loses_trailing_whitespace_and_thinking_blocks_go_back():
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    body = body_for(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "The answer is ", "thinking_blocks": [thinking]},
            ]
        }
    )
    assert body["messages"][1]["content"] == [thinking, {"type": "text", "text": "The answer is"}]


def test_cache_control_on_parts_is_kept():
    mark = {"type": "ephemeral"}
    body = body_for(
        {
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "long", "cache_control": mark}],
                },
                {"role": "user", "content": "x"},
            ]
        }
    )
    assert body["system"] == [{"type": "text", "text": "long", "cache_control": mark}]


@pytest.mark.parametrize(
    "request_body",
    [
        {"messages": [{"role": "user", "content": "x"}], "n": 2},
        {"messages": [{"role": "system", "content": "only a system prompt"}]},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
        {"messages": [{"role": "user", "content": "x"},
                      {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                       "function": {"name": "f", "arguments": "{not json"}}]}]},
        {"messages": [{"role": "tool", "content": "orphan"}]},
        {"messages": [{"role": "function", "name": "f", "content": "legacy"}]},
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]},
    ],
    ids=["n", "system-only", "audio", "bmp", "ftp", "bad-arguments", "tool-without-id",
         "function-role", "non-function-tool"],
)  # fmt: skip
def test_what_anthropic_cannot_express_is_refused_before_sending(request_body):
    assert refused(request_body).message


# --------------------------------------------------------------------------
# responses and usage
# --------------------------------------------------------------------------

MESSAGE: dict[str, Any] = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Let me check.", "signature": "EqQBCgIYAh"},
        {"type": "text", "text": "I'll look that up."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"city": "San Francisco, CA", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "output_tokens": 503,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1800,
    },
}


def test_a_message_becomes_a_chat_completion():
    response = wire.chat_response(MESSAGE, created=1700000000)
    choice = response.choices[0]
    assert response.id == MESSAGE["id"] and response.model == MESSAGE["model"]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll look that up."
    assert choice.message.reasoning_content == "Let me check."
    assert choice.message.thinking_blocks == [MESSAGE["content"][0]]
    (call,) = choice.message.tool_calls
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {
        "city": "San Francisco, CA",
        "unit": "celsius",
    }


def test_usage_counts_cached_input_once():
    usage = wire.chat_response(MESSAGE).usage
    assert usage.prompt_tokens == 2095 + 100 + 1800
    assert usage.completion_tokens == 503
    assert usage.total_tokens == 2095 + 100 + 1800 + 503
    assert usage.prompt_tokens_details == {"cached_tokens": 1800, "cache_creation_tokens": 100}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop_reason, finish):
    message = {**MESSAGE, "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    assert wire.chat_response(message).choices[0].finish_reason == finish


def test_a_reply_with_only_tool_calls_has_null_content():
    message = {**MESSAGE, "content": [MESSAGE["content"][2]]}
    assert wire.chat_response(message).choices[0].message.content is None


# --------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------

# The documented streaming example (text, then a tool_use with input_json_delta).
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "stop_sequence": None, "stop_reason": None, "content": [],
        "usage": {"input_tokens": 472, "output_tokens": 2, "cache_read_input_tokens": 28}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Okay"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": ", let's check"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
        "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": " \"San Francisco, CA\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 89}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip


def run(events: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    translator = wire.StreamTranslator(created=1, model="fallback-name")
    chunks = [chunk for name, data in events for chunk in translator.feed(name, data)]
    assert translator.finished
    return chunks


def test_stream_events_become_openai_chunks():
    chunks = run(EVENTS)
    deltas = [c.choices[0].delta.model_dump(exclude_none=True) for c in chunks if c.choices]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Okay"},
        {"content": ", let's check"},
        {"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "San Francisco, CA"}'}}]},
        {},
    ]  # fmt: skip
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert all(c.id == "msg_014p7gG3wDgGV9EUtLvnow3U" for c in chunks)
    assert all(c.model == "claude-sonnet-4-5" for c in chunks)
    final = chunks[-1]
    assert final.choices == []
    assert final.usage.prompt_tokens == 500 and final.usage.completion_tokens == 89
    assert final.usage.prompt_tokens_details["cached_tokens"] == 28


def test_thinking_deltas_become_reasoning_content_and_a_signed_block():
    events = [
        EVENTS[0],
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "think."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "EqQBCg"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    deltas = [c.choices[0].delta for c in run(events) if c.choices]
    assert (
        "".join((d.model_extra or {}).get("reasoning_content", "") for d in deltas)
        == "Let me think."
    )
    blocks = [b for d in deltas for b in (d.model_extra or {}).get("thinking_blocks", [])]
    assert blocks == [{"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCg"}]


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("overloaded_error", FailureClass.OVERLOADED),
        ("rate_limit_error", FailureClass.RATE_LIMITED),
        ("api_error", FailureClass.SERVER_ERROR),
        ("invalid_request_error", FailureClass.BAD_REQUEST),
        ("authentication_error", FailureClass.AUTH),
        ("timeout_error", FailureClass.TIMEOUT),
        ("brand_new_error", FailureClass.SERVER_ERROR),
    ],
)
def test_error_events_raise_the_mapped_class(kind, failure):
    translator = wire.StreamTranslator()
    assert translator.feed(*EVENTS[0]) == []  # nothing sent yet: the attempt can fall back
    with pytest.raises(ProviderError) as caught:
        translator.feed("error", {"type": "error", "error": {"type": kind, "message": "Boom"}})
    assert caught.value.failure is failure and caught.value.message == "Boom"


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "message", "failure"),
    [
        (529, "overloaded_error", "Overloaded", FailureClass.OVERLOADED),
        (429, "rate_limit_error", "slow down", FailureClass.RATE_LIMITED),
        (500, "api_error", "Internal server error", FailureClass.SERVER_ERROR),
        (500, "overloaded_error", "Overloaded", FailureClass.OVERLOADED),
        (401, "authentication_error", "invalid x-api-key", FailureClass.AUTH),
        (403, "permission_error", "no", FailureClass.AUTH),
        (402, "billing_error", "credit balance is too low", FailureClass.AUTH),
        (400, "invalid_request_error", "messages: field required", FailureClass.BAD_REQUEST),
        (400, "invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum",
         FailureClass.CONTEXT_LENGTH),
        (400, "invalid_request_error",
         "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000",
         FailureClass.CONTEXT_LENGTH),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.",
         FailureClass.CONTEXT_LENGTH),
        (404, "not_found_error", "model: claude-nope", FailureClass.NOT_FOUND),
        (504, "timeout_error", "Request timed out", FailureClass.TIMEOUT),
    ],
)  # fmt: skip
def test_http_errors(status, kind, message, failure):
    assert wire.classify_error(status, {"type": kind, "message": message}) is failure


_kinds = st.sampled_from([None, "overloaded_error", "rate_limit_error", "api_error",
                          "invalid_request_error", "authentication_error", "billing_error",
                          "request_too_large", "not_found_error", "x"])  # fmt: skip


@given(status=st.integers(400, 599), kind=_kinds, message=st.text(max_size=40))
def test_an_outage_is_never_blamed_on_the_caller(status, kind, message):
    failure = wire.classify_error(status, {"type": kind, "message": message})
    if status >= 500 or status == 429:
        assert failure not in (FailureClass.BAD_REQUEST, FailureClass.CANCELLED)


# --------------------------------------------------------------------------
# round-trip properties
# --------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20).filter(
    lambda t: t.strip() == t and t.strip()
)  # fmt: skip
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_inputs = st.dictionaries(_text, _json_values, max_size=4)
_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{0,15}", fullmatch=True)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid OpenAI conversations: system prompts anywhere, user turns (text and
    images), assistant turns with text and/or tool calls each answered by tool
    messages, sometimes several user messages in a row; ending on a user or tool turn."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(_text)}]
    call_ids = iter(range(10_000))
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            messages.append(
                {"role": draw(st.sampled_from(["system", "developer"])), "content": draw(_text)}
            )
        calls = [
            {"id": f"call_{next(call_ids)}", "type": "function",
             "function": {"name": draw(_names), "arguments": json.dumps(draw(_inputs))}}
            for _ in range(draw(st.integers(0, 2)))
        ]  # fmt: skip
        assistant: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | _text)}
        if calls:
            assistant["tool_calls"] = calls
        elif assistant["content"] is None:
            assistant["content"] = draw(_text)
        messages.append(assistant)
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": draw(_text)})
        for _ in range(draw(st.integers(0 if calls else 1, 2))):
            content: Any = draw(_text)
            if draw(st.booleans()):
                content = [{"type": "text", "text": content},
                           {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]  # fmt: skip
            messages.append({"role": "user", "content": content})
    return messages


def _openai_items(messages: list[dict[str, Any]]) -> tuple[list[str], list[tuple]]:
    system, items = [], []
    for m in messages:
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if m["role"] in ("system", "developer"):
            system += [p["text"] for p in parts]
        elif m["role"] == "tool":
            items.append(("tool", m["tool_call_id"], content))
        else:
            for p in parts:
                items.append((m["role"], "text", p["text"]) if p["type"] == "text"
                             else (m["role"], "image", p["image_url"]["url"]))  # fmt: skip
            for call in m.get("tool_calls") or ():
                fn = call["function"]
                items.append(("assistant", "call", call["id"], fn["name"], json.loads(fn["arguments"])))  # fmt: skip
    return system, items


def _anthropic_items(body: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """The inverse translation: an Anthropic request back to flat OpenAI items."""
    system = [b["text"] for b in body.get("system", [])]
    items = []
    for turn in body["messages"]:
        content = turn["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for b in blocks:
            if b["type"] == "text":
                items.append((turn["role"], "text", b["text"]))
            elif b["type"] == "image":
                src = b["source"]
                items.append(
                    (turn["role"], "image", f"data:{src['media_type']};base64,{src['data']}")
                )
            elif b["type"] == "tool_use":
                items.append(("assistant", "call", b["id"], b["name"], b["input"]))
            elif b["type"] == "tool_result":
                items.append(("tool", b["tool_use_id"], b["content"]))
    return system, items


@settings(max_examples=150, deadline=None)
@given(messages=conversations())
def test_openai_to_anthropic_keeps_every_message_and_tool_call(messages):
    """OpenAI → Anthropic → OpenAI keeps the system prompt, every text, image, tool
    call (arguments as parsed JSON) and tool result in order; and the Anthropic
    request is one the API accepts (alternating roles, tool results answering the
    previous turn's tool uses, first in their turn)."""
    body = body_for({"messages": messages})
    assert _anthropic_items(body) == _openai_items(messages)
    roles = [t["role"] for t in body["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles))


@st.composite
def anthropic_messages(draw: st.DrawFn) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if draw(st.booleans()):
        blocks.append({"type": "thinking", "thinking": draw(_text), "signature": draw(_text)})
    for _ in range(draw(st.integers(0, 2))):
        blocks.append({"type": "text", "text": draw(_text)})
    for n in range(draw(st.integers(0, 3))):
        blocks.append({"type": "tool_use", "id": f"toolu_{n}", "name": draw(_names), "input": draw(_inputs)})  # fmt: skip
    counts = st.integers(0, 10_000)
    return {
        "id": "msg_x", "type": "message", "role": "assistant", "model": "claude-x",
        "content": blocks,
        "stop_reason": draw(st.sampled_from(list(wire.FINISH_REASONS))),
        "stop_sequence": None,
        "usage": {"input_tokens": draw(counts), "output_tokens": draw(counts),
                  "cache_read_input_tokens": draw(counts | st.none()),
                  "cache_creation_input_tokens": draw(counts | st.none())},
    }  # fmt: skip


def _split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(len(text) - 1, 1)), max_size=3)))
    cuts = [c for c in cuts if c < len(text)]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=False)]


@st.composite
def streamed(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """A message and the events that stream it, with text and JSON split at random."""
    message = draw(anthropic_messages())
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        kind = block["type"]
        empty = {"text": {"type": "text", "text": ""},
                 "thinking": {"type": "thinking", "thinking": "", "signature": ""},
                 "tool_use": {**block, "input": {}}}[kind]  # fmt: skip
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": empty}))  # fmt: skip
        if kind == "text":
            deltas = [{"type": "text_delta", "text": p} for p in _split(draw, block["text"])]
        elif kind == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _split(draw, block["thinking"])]  # fmt: skip
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _split(draw, json.dumps(block["input"]))]  # fmt: skip
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]  # fmt: skip
        if draw(st.booleans()):
            events.append(("ping", {"type": "ping"}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": usage["output_tokens"]}}))  # fmt: skip
    events.append(("message_stop", {"type": "message_stop"}))
    return message, events


@settings(max_examples=150, deadline=None)
@given(case=streamed())
def test_a_streamed_message_adds_up_to_the_same_completion(case):
    """Accumulating the OpenAI chunks of a stream gives what the non-streaming
    translation of the same message gives: text, reasoning, thinking blocks, tool
    calls (by index; arguments parse to the tool_use input), finish_reason, usage."""
    message, events = case
    expected = wire.chat_response(message).choices[0]
    chunks = run(events)
    text, reasoning, blocks, calls, finish = "", "", [], {}, None
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        delta = choice.delta
        text += delta.content or ""
        extra = delta.model_extra or {}
        reasoning += extra.get("reasoning_content") or ""
        blocks += extra.get("thinking_blocks") or []
        for call in delta.tool_calls or ():
            slot = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            if "id" in call:
                assert slot["id"] is None  # id and name come once, first
                slot["id"], slot["name"] = call["id"], call["function"]["name"]
            slot["arguments"] += call["function"].get("arguments", "")
        finish = choice.finish_reason or finish
    assert text == (expected.message.content or "")
    assert reasoning == (expected.message.model_extra.get("reasoning_content") or "")
    assert blocks == (expected.message.model_extra.get("thinking_blocks") or [])
    assert sorted(calls) == list(range(len(calls)))
    got = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    want = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in expected.message.tool_calls or ()]  # fmt: skip
    assert got == want == [(b["id"], b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"]  # fmt: skip
    assert finish == expected.finish_reason
    assert chunks[-1].usage == wire.chat_response(message).usage


@given(
    fresh=st.integers(0, 10**7), read=st.integers(0, 10**7) | st.none(),
    written=st.integers(0, 10**7) | st.none(), output=st.integers(0, 10**7),
)  # fmt: skip
def test_usage_never_double_counts(fresh, read, written, output):
    usage = wire.usage({"input_tokens": fresh, "cache_read_input_tokens": read,
                        "cache_creation_input_tokens": written, "output_tokens": output})  # fmt: skip
    assert usage.prompt_tokens == fresh + (read or 0) + (written or 0)
    assert usage.prompt_tokens_details["cached_tokens"] == (read or 0) <= usage.prompt_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == output


def test_the_fake_rejects_what_the_translator_must_never_send():
    good = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    for broken, words in [
        ({**good, "messages": [{"role": "system", "content": "x"}]}, "top-level `system`"),
        ({**good, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
         "alternate"),
        ({k: v for k, v in good.items() if k != "max_tokens"}, "max_tokens: Field required"),
        ({**good, "frequency_penalty": 1}, "Extra inputs are not permitted"),
        ({**good, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "orphan"}]}]},
         "corresponding `tool_use`"),
        ({**good, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": "no result"}]}, "without `tool_result`"),
        ({**good, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "first"},
                                         {"type": "tool_result", "tool_use_id": "t1"}]}]}, "first"),
        ({**good, "temperature": 1.5}, "temperature"),
        ({**good, "messages": [{"role": "user", "content": ""}]}, "non-empty"),
    ]:  # fmt: skip
        with pytest.raises(Rejection, match=None) as caught:
            validate_messages_request(broken)
        assert words in str(caught.value)
