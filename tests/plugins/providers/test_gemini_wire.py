"""The pure OpenAI <-> Gemini translation in ``turnout.plugins.providers.gemini_wire``.

Gemini shapes follow the API reference and googleapis/python-genai's types
(``GenerateContentResponse``, ``Part``, ``usageMetadata``, ``finishReason``).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout.errors import FailureClass
from turnout.plugins.providers import gemini_wire as wire
from turnout.wire.chat import ChatRequest


def body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return wire.request_body(
        ChatRequest.model_validate({"model": "m", "messages": messages, **extra})
    )


def call(ident: str, name: str, args: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
        **more,
    }


# ---------------------------------------------------------------- requests


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    sent = body([
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "hi"},
    ])  # fmt: skip
    assert sent["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Use French."}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_consecutive_turns_of_one_role_are_merged() -> None:
    sent = body([
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "d"},
    ])  # fmt: skip
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
    ]


def test_tool_calls_and_results_round_trip_with_names_from_ids() -> None:
    sent = body([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            call("c1", "get_weather", {"city": "Paris"}),
            call("c2", "get_time", {}),
        ]},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "user", "content": "thanks"},
    ])  # fmt: skip
    model, answers = sent["contents"][1], sent["contents"][2]
    assert model["parts"][0] == {"text": "Looking."}
    assert model["parts"][1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert model["parts"][1]["thoughtSignature"] == wire.SKIP_SIGNATURE  # unsigned history
    assert "thoughtSignature" not in model["parts"][2]
    assert answers == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"text": "thanks"},
    ]}  # fmt: skip


def test_a_thought_signature_is_sent_back_where_gemini_put_it() -> None:
    signed = call("c1", "f", {}, extra_content={"google": {"thought_signature": "c2ln"}})
    sent = body([
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [signed, call("c2", "f", {"x": 1})]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "tool", "tool_call_id": "c2", "content": "2"},
    ])  # fmt: skip
    parts = sent["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "c2ln" and "thoughtSignature" not in parts[1]
    assert sent["contents"][2]["parts"][0]["functionResponse"]["response"] == {"output": 1}


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ([{"role": "tool", "tool_call_id": "nope", "content": "x"}], "answers no earlier"),
        (
            [
                {"role": "assistant", "tool_calls": [call("a", "f", {})]}
                | {
                    "tool_calls": [
                        {
                            "id": "a",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[1]"},
                        }
                    ]
                }
            ],
            "JSON object",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/pic"}}],
                }
            ],
            "media type",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                }
            ],
            "base64",
        ),
        ([{"role": "user", "content": [{"type": "video", "video": {}}]}], "not supported"),
        ([{"role": "system", "content": "only a system prompt"}], "at least one"),
        ([{"role": "user", "content": ""}], "needs some content"),
    ],
)
def test_requests_gemini_cannot_take_are_refused_with_the_place(messages, words) -> None:
    with pytest.raises(wire.TranslationError, match=words):
        body(messages)


def test_images_inline_and_by_url() -> None:
    sent = body([{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.JPG?size=2", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]}])  # fmt: skip
    assert sent["contents"][0]["parts"] == [
        {"text": "compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.test/cat.JPG?size=2"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


def test_generation_config_and_tools() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": False,
    }
    sent = body(
        [{"role": "user", "content": "x"}],
        temperature=0.3, top_p=0.9, max_completion_tokens=50, stop="END", n=2, seed=7,
        presence_penalty=0.5, top_k=40,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        tools=[{"type": "function", "function": {"name": "f", "description": "F", "parameters": schema}},
               {"type": "function", "function": {"name": "g"}}],
        tool_choice={"type": "function", "function": {"name": "g"}},
    )  # fmt: skip
    assert sent["generationConfig"] == {
        "temperature": 0.3, "topP": 0.9, "topK": 40, "maxOutputTokens": 50,
        "stopSequences": ["END"], "candidateCount": 2, "presencePenalty": 0.5, "seed": 7,
        "responseMimeType": "application/json", "responseJsonSchema": schema,
    }  # fmt: skip
    assert sent["tools"] == [{"functionDeclarations": [
        {"name": "f", "description": "F", "parametersJsonSchema": schema}, {"name": "g"}]}]  # fmt: skip
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}
    }


@pytest.mark.parametrize(
    ("choice", "config", "declared"),
    [
        ("auto", {"mode": "AUTO"}, ["f", "g"]),
        ("none", {"mode": "NONE"}, ["f", "g"]),
        ("required", {"mode": "ANY"}, ["f", "g"]),
        (None, None, ["f", "g"]),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "g"}}],
                },
            },
            {"mode": "AUTO"},
            ["g"],
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "g"}}],
                },
            },
            {"mode": "ANY", "allowedFunctionNames": ["g"]},
            ["f", "g"],
        ),
    ],
)
def test_tool_choice(choice, config, declared) -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("f", "g")]
    sent = body([{"role": "user", "content": "x"}], tools=tools, tool_choice=choice)
    assert sent.get("toolConfig", {}).get("functionCallingConfig") == config
    assert [d["name"] for d in sent["tools"][0]["functionDeclarations"]] == declared


# ---------------------------------------------------------------- responses


@pytest.mark.parametrize(
    ("reason", "has_call", "finish"),
    [
        ("STOP", False, "stop"), ("STOP", True, "tool_calls"), ("MAX_TOKENS", True, "length"),
        ("MAX_TOKENS", False, "length"), ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"), ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"), ("SPII", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"), ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"), (None, False, None),
        ("FINISH_REASON_UNSPECIFIED", False, None),
    ],
)  # fmt: skip
def test_finish_reasons(reason, has_call, finish) -> None:
    assert wire.finish_reason(reason, has_call) == finish


def test_usage_counts_cached_tokens_once_and_thinking_as_output() -> None:
    usage = wire.usage_from_gemini({
        "promptTokenCount": 1000, "cachedContentTokenCount": 800, "candidatesTokenCount": 50,
        "thoughtsTokenCount": 30, "toolUsePromptTokenCount": 5, "totalTokenCount": 1085,
    })  # fmt: skip
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1005, 80, 1085)
    assert usage.prompt_tokens_details == {"cached_tokens": 800}
    assert usage.completion_tokens_details == {"reasoning_tokens": 30}
    assert wire.usage_from_gemini(None) is None


def test_a_response_with_text_thoughts_and_calls() -> None:
    payload = {
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "plan", "thought": True},
                {"text": "Calling."},
                {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "f", "args": {"a": 2}}},
            ]},
            "finishReason": "STOP",
        }],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc",
    }  # fmt: skip
    first = wire.response_from_gemini(payload, model="m", created=1, fallback_id="x")
    again = wire.response_from_gemini(payload, model="m", created=1, fallback_id="y")
    message = first.choices[0].message
    assert first.id == "chatcmpl-abc" and first.model == "gemini-2.5-flash"
    assert message.content == "Calling." and message.reasoning_content == "plan"
    calls = message.tool_calls
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"a": 1}, {"a": 2}]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert len({c["id"] for c in calls}) == 2
    assert [c["id"] for c in calls] == [c["id"] for c in again.choices[0].message.tool_calls]
    assert first.choices[0].finish_reason == "tool_calls"
    other = wire.response_from_gemini(
        {**payload, "responseId": "def"}, model="m", created=1, fallback_id="x"
    )
    assert other.choices[0].message.tool_calls[0]["id"] != calls[0]["id"]


def test_a_blocked_prompt_is_recognised() -> None:
    assert (
        wire.block_reason({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
        == "PROHIBITED_CONTENT"
    )
    assert wire.block_reason({"candidates": [{}], "promptFeedback": {}}) is None


def test_a_stream_of_several_candidates() -> None:
    stream = wire.GeminiStream(model="m", created=1, fallback_id="id")
    chunks = []
    chunks += stream.feed("message", {"candidates": [{"content": {"parts": [{"text": "Hel"}]}},
                                          {"index": 1, "content": {"parts": [{"text": "Bon"}]}}],
                           "responseId": "r1", "usageMetadata": {"promptTokenCount": 3}})  # fmt: skip
    assert not stream.finished
    chunks += stream.feed("message", {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"},
                                          {"index": 1, "finishReason": "MAX_TOKENS"}],
                           "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}})  # fmt: skip
    assert stream.finished
    text: dict[int, str] = {}
    finish = {}
    for chunk in chunks:
        assert chunk.id == "chatcmpl-r1"
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert text == {0: "Hello", 1: "Bon"} and finish == {0: "stop", 1: "length"}
    usage = stream.usage_chunk()
    assert usage is not None and usage.choices == [] and usage.usage.total_tokens == 7


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error", "failure"),
    [
        (429, {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}, FailureClass.RATE_LIMITED),
        (503, {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."}, FailureClass.OVERLOADED),
        (500, {"code": 500, "status": "INTERNAL", "message": "x"}, FailureClass.SERVER_ERROR),
        (504, {"code": 504, "status": "DEADLINE_EXCEEDED", "message": "x"}, FailureClass.TIMEOUT),
        (401, {"code": 401, "status": "UNAUTHENTICATED", "message": "x"}, FailureClass.AUTH),
        (403, {"code": 403, "status": "PERMISSION_DENIED", "message": "x"}, FailureClass.AUTH),
        (400, {"code": 400, "status": "FAILED_PRECONDITION", "message": "enable billing"}, FailureClass.AUTH),
        (400, {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid. Please pass a valid API key.",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]},
         FailureClass.AUTH),
        (400, {"code": 400, "status": "INVALID_ARGUMENT", "message":
               "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."},
         FailureClass.CONTEXT_LENGTH),
        (400, {"code": 400, "status": "INVALID_ARGUMENT", "message": "Please use a valid role: user, model."},
         FailureClass.BAD_REQUEST),
        (404, {"code": 404, "status": "NOT_FOUND", "message": "models/x is not found"}, FailureClass.NOT_FOUND),
        (None, {"code": 503, "message": "later"}, FailureClass.OVERLOADED),
        (None, {"message": "??"}, FailureClass.SERVER_ERROR),
        (502, {"message": "bad gateway"}, FailureClass.SERVER_ERROR),
    ],
)  # fmt: skip
def test_google_errors_are_classified(status, error, failure) -> None:
    assert wire.failure_class(status, error) is failure


def test_retry_info_is_read() -> None:
    error = {"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                         {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.5s"}]}  # fmt: skip
    assert wire.retry_delay(error) == 34.5
    assert (
        wire.retry_delay(
            {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "xs"}]}
        )
        is None
    )
    assert wire.retry_delay({}) is None


# ---------------------------------------------------------------- properties

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
args = st.dictionaries(names, json_values, max_size=3)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    counter = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["system", "user", "assistant", "tools"]))
        if kind in ("system", "user"):
            messages.append({"role": kind, "content": draw(texts)})
        elif kind == "assistant":
            messages.append({"role": "assistant", "content": draw(texts)})
        else:
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                counter += 1
                calls.append(call(f"call{counter}", draw(names), draw(args)))
            messages.append(
                {"role": "assistant", "content": draw(st.none() | texts), "tool_calls": calls}
            )
            for item in draw(st.permutations(calls)):
                result = draw(texts | args.map(json.dumps))
                messages.append({"role": "tool", "tool_call_id": item["id"], "content": result})
    if all(m["role"] == "system" for m in messages):
        messages.append({"role": "user", "content": draw(texts)})
    return messages


def _atoms(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a conversation says, in order, in a vendor-neutral form."""
    names_by_id: dict[str, str] = {}
    atoms: list[tuple[Any, ...]] = []
    for m in messages:
        if m["role"] == "user":
            atoms.append(("user", "text", m["content"]))
        elif m["role"] == "assistant":
            if m.get("content"):
                atoms.append(("model", "text", m["content"]))
            for c in m.get("tool_calls") or []:
                names_by_id[c["id"]] = c["function"]["name"]
                atoms.append(
                    ("model", "call", c["function"]["name"], json.loads(c["function"]["arguments"]))
                )
        elif m["role"] == "tool":
            try:
                value = json.loads(m["content"])
            except ValueError:
                value = m["content"]
            atoms.append(("user", "response", names_by_id[m["tool_call_id"]], value))
    return atoms


def _gemini_atoms(contents: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    atoms: list[tuple[Any, ...]] = []
    for content in contents:
        for part in content["parts"]:
            if "text" in part:
                atoms.append((content["role"], "text", part["text"]))
            elif "functionCall" in part:
                atoms.append(
                    (
                        content["role"],
                        "call",
                        part["functionCall"]["name"],
                        part["functionCall"]["args"],
                    )
                )
            else:
                response = part["functionResponse"]["response"]
                value = response["output"] if set(response) == {"output"} else response
                atoms.append((content["role"], "response", part["functionResponse"]["name"], value))
    return atoms


@settings(max_examples=150, deadline=None)
@given(conversations())
def test_openai_to_gemini_keeps_every_message_and_tool_call(messages) -> None:
    sent = body(messages)
    contents = sent["contents"]
    roles = [c["role"] for c in contents]
    assert all(a != b for a, b in itertools.pairwise(roles))
    assert _gemini_atoms(contents) == _atoms(messages)
    system = [m["content"] for m in messages if m["role"] == "system"]
    assert [p["text"] for p in sent.get("systemInstruction", {}).get("parts", [])] == system
    for content in contents:  # every function-call turn is signed (Gemini 3 needs it)
        calls = [p for p in content["parts"] if "functionCall" in p]
        assert not calls or calls[0].get("thoughtSignature") == wire.SKIP_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, args), min_size=1, max_size=4), st.text(max_size=20), texts)
def test_gemini_calls_come_back_as_the_same_openai_tool_calls(calls, text, response_id) -> None:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    parts += [{"functionCall": {"name": n, "args": a}} for n, a in calls]
    payload = {
        "candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}],
        "responseId": response_id,
    }
    response = wire.response_from_gemini(payload, model="m", created=0, fallback_id="f")
    got = response.choices[0].message.tool_calls
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in got] == calls
    assert len({c["id"] for c in got}) == len(calls)
    assert response.choices[0].message.content == (text or None)
    # ... and sent back, the calls are what Gemini said
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": text or None, "tool_calls": got}]  # fmt: skip
    history += [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in got]
    replayed = body(history)["contents"][1]["parts"]
    assert [p["functionCall"] for p in replayed if "functionCall" in p] == [
        {"name": n, "args": a} for n, a in calls
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=1, max_size=8))
def test_a_streamed_text_is_the_concatenation_of_its_events(pieces) -> None:
    stream = wire.GeminiStream(model="m", created=0, fallback_id="f")
    events = [{"candidates": [{"content": {"parts": [{"text": p}]}}]} for p in pieces]
    events[-1]["candidates"][0]["finishReason"] = "STOP"
    chunks = [c for e in events for c in stream.feed("message", e)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(pieces)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert stream.finished
