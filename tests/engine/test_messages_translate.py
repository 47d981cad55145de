"""Properties of the Messages ⇄ chat translation (``turnout.surfaces.messages``):
what a chat target gets keeps every turn's text, tool calls and their answers in
the order chat requires; a native answer read as chat and back keeps its blocks
(signatures included); usage keeps its cache counts; a translated stream is a
well-formed event sequence whatever the chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnout.errors import TurnoutError
from turnout.surfaces.messages.events import EventTranslator
from turnout.surfaces.messages.translate import (
    chat_of_message,
    message_of,
    messages_usage,
    to_chat_request,
    usage_of,
)
from turnout.surfaces.messages.wire import parse_messages_request
from turnout.wire.chat import ChatChunk

words = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=20)
ids = st.text(alphabet="abcdef0123456789", min_size=6, max_size=12).map(lambda s: "toolu_" + s)
inputs = st.dictionaries(st.sampled_from("abc"), st.integers() | words, max_size=3)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    """Alternating turns; an assistant turn may call tools, the next user turn answers them."""
    turns: list[dict[str, Any]] = [{"role": "user", "content": draw(words)}]
    for _ in range(draw(st.integers(0, 3))):
        calls = draw(st.lists(ids, max_size=3, unique=True))
        blocks: list[dict[str, Any]] = []
        if draw(st.booleans()):
            blocks.append({"type": "thinking", "thinking": draw(words), "signature": "s"})
        blocks.append({"type": "text", "text": draw(words)})
        blocks += [{"type": "tool_use", "id": i, "name": "f", "input": draw(inputs)} for i in calls]
        turns.append({"role": "assistant", "content": blocks})
        answer: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": i, "content": draw(words)} for i in calls
        ]
        answer.append({"type": "text", "text": draw(words)})
        turns.append({"role": "user", "content": answer})
    return {"model": "m", "max_tokens": 10, "system": draw(words), "messages": turns}


@given(conversations())
def test_a_chat_target_gets_every_turn_with_tool_answers_right_after_their_calls(
    body: dict[str, Any],
) -> None:
    request, _ = parse_messages_request(body)
    chat = to_chat_request(request)
    messages = chat.messages
    assert messages[0].role == "system"
    open_calls: set[str] = set()
    for message in messages[1:]:
        if message.role == "tool":
            assert message.tool_call_id in open_calls  # answers only a call just made
            open_calls.discard(message.tool_call_id)
            continue
        assert not open_calls  # nothing else comes between a call and its answer
        if message.role == "assistant":
            open_calls = {call["id"] for call in message.tool_calls or ()}
    sent_inputs = [
        json.loads(call["function"]["arguments"]) for m in messages for call in m.tool_calls or ()
    ]
    wanted = [
        block["input"]
        for turn in body["messages"]
        if turn["role"] == "assistant"
        for block in turn["content"]
        if block["type"] == "tool_use"
    ]
    assert sent_inputs == wanted


@st.composite
def native_messages(draw: st.DrawFn) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if draw(st.booleans()):
        blocks.append({"type": "thinking", "thinking": draw(words), "signature": draw(words)})
    blocks.append({"type": "text", "text": draw(words)})
    for i in draw(st.lists(ids, max_size=2, unique=True)):
        blocks.append({"type": "tool_use", "id": i, "name": "f", "input": draw(inputs)})
    stop = (
        "tool_use"
        if blocks[-1]["type"] == "tool_use"
        else draw(st.sampled_from(["end_turn", "max_tokens"]))
    )
    usage = {
        name: draw(st.integers(0, 10_000))
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    }  # fmt: skip
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage}  # fmt: skip


@given(native_messages())
def test_a_native_answer_read_as_chat_and_back_keeps_its_blocks(message: dict[str, Any]) -> None:
    back = message_of(chat_of_message(message), "msg_1")
    assert back["content"] == message["content"]
    assert back["stop_reason"] == message["stop_reason"]
    assert back["usage"] == message["usage"]


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_usage_keeps_cache_reads_and_writes_apart(
    fresh: int, read: int, written: int, output: int
) -> None:
    raw = {"input_tokens": fresh, "output_tokens": output,
           "cache_read_input_tokens": read, "cache_creation_input_tokens": written}  # fmt: skip
    usage = usage_of(raw)
    assert usage is not None and usage.prompt_tokens == fresh + read + written
    assert messages_usage(usage) == raw


chunk_parts = st.lists(
    st.one_of(
        words.map(lambda t: ("text", t)),
        words.map(lambda t: ("reasoning", t)),
        st.tuples(st.integers(0, 2), words).map(lambda p: ("tool", p)),
    ),
    max_size=12,
)


@given(chunk_parts)
def test_a_translated_stream_is_well_formed(parts: list[tuple[str, Any]]) -> None:
    translator = EventTranslator("msg_x", "m")
    events = []
    text = ""
    for kind, value in parts:
        delta: dict[str, Any] = {}
        if kind == "text":
            delta["content"] = value
            text += value
        elif kind == "reasoning":
            delta["reasoning_content"] = value
        else:
            index, args = value
            delta["tool_calls"] = [{"index": index, "id": f"c{index}",
                                    "function": {"name": "f", "arguments": args}}]  # fmt: skip
        chunk = ChatChunk.model_validate({"id": "c", "model": "m", "choices": [{"delta": delta}]})
        events += translator.feed(chunk)
    events += translator.finish()
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    open_index = None
    seen = -1
    streamed = ""
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None and data["index"] == seen + 1
            open_index = seen = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
            streamed += data["delta"].get("text", "")
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    assert streamed == text


def test_what_chat_cannot_say_is_a_400_naming_the_field() -> None:
    request, _ = parse_messages_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        }
    )
    with pytest.raises(TurnoutError, match="web_search") as info:
        to_chat_request(request)
    assert info.value.param == "tools[0]"
    with pytest.raises(TurnoutError) as bad:
        parse_messages_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert bad.value.status_code == 400 and bad.value.param == "max_tokens"
