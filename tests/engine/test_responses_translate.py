"""The Responses API translators, checked on generated conversations and streams."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnout.errors import TurnoutError
from turnout.surfaces.responses.events import EventTranslator
from turnout.surfaces.responses.translate import items_to_messages, to_chat_request
from turnout.surfaces.responses.wire import ResponsesRequest
from turnout.wire.chat import ChatChunk, ChunkChoice, Delta

text = st.text(min_size=1, max_size=20)
message = st.builds(
    lambda role, t: {"role": role, "content": t},
    st.sampled_from(["user", "assistant", "developer"]),
    text,
)
call = st.builds(
    lambda cid, name: {"type": "function_call", "call_id": cid, "name": name, "arguments": "{}"},
    st.from_regex(r"call_[a-z0-9]{4}", fullmatch=True),
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
)
output = st.builds(
    lambda cid, t: {"type": "function_call_output", "call_id": cid, "output": t},
    st.from_regex(r"call_[a-z0-9]{4}", fullmatch=True),
    text,
)


@given(st.lists(st.one_of(message, call, output), min_size=1, max_size=12))
def test_every_item_survives_translation_in_order(items: list[dict[str, Any]]) -> None:
    messages = items_to_messages(items)
    texts = [m["content"] for m in messages if m["role"] != "assistant" or m.get("content")]
    expected = [
        i.get("content") or i.get("output") for i in items if i.get("type") != "function_call"
    ]
    assert texts == expected
    calls = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    assert calls == [i["call_id"] for i in items if i.get("type") == "function_call"]
    for m in messages:  # function calls ride on assistant messages only
        assert "tool_calls" not in m or m["role"] == "assistant"


@given(text, st.lists(message, max_size=4))
def test_instructions_come_first_then_history_then_input(
    instructions: str, history: list[Any]
) -> None:
    request = ResponsesRequest(model="m", instructions=instructions, input="now")
    chat = to_chat_request(request, items_to_messages(history) if history else [])
    dumped = [m.model_dump(exclude_none=True) for m in chat.messages]
    assert dumped[0] == {"role": "system", "content": instructions}
    assert dumped[-1] == {"role": "user", "content": "now"}
    assert len(dumped) == len(history) + 2


@pytest.mark.parametrize("kind", ["web_search", "file_search", "code_interpreter", "mcp"])
def test_a_built_in_tool_names_its_field(kind: str) -> None:
    request = ResponsesRequest(model="m", input="x", tools=[{"type": kind}])
    with pytest.raises(TurnoutError, match=kind) as info:
        to_chat_request(request)
    assert info.value.param == "tools[0].type" and info.value.status_code == 400


def _chunk(delta: Delta, finish: str | None = None) -> ChatChunk:
    return ChatChunk(id="c", model="m", choices=[ChunkChoice(delta=delta, finish_reason=finish)])


piece = st.one_of(
    st.builds(lambda t: ("text", t), text),
    st.builds(lambda t: ("reasoning", t), text),
    st.builds(lambda t: ("tool", t), st.lists(st.sampled_from(["{", "}", "a", '"']), max_size=3)),
)


@given(st.lists(piece, min_size=1, max_size=10))
def test_stream_events_are_ordered_as_the_sdk_requires(pieces: list[tuple[str, Any]]) -> None:
    translator = EventTranslator(ResponsesRequest(model="m", input="x"), "resp_1", 0)
    events = translator.start()
    tools = 0
    for kind, value in pieces:
        if kind == "text":
            delta = Delta(content=value)
        elif kind == "reasoning":
            delta = Delta(reasoning_content=value)  # type: ignore[call-arg]
        else:
            call = {
                "index": tools,
                "id": f"call_{tools}",
                "function": {"name": "f", "arguments": ""},
            }
            tools += 1
            events += translator.feed(_chunk(Delta(tool_calls=[call])))
            delta = Delta(
                tool_calls=[{"index": tools - 1, "function": {"arguments": "".join(value)}}]
            )
        events += translator.feed(_chunk(delta))
    events += translator.feed(_chunk(Delta(), "stop"))
    events += translator.finish()

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    opened: dict[int, str] = {}
    done: set[int] = set()
    for e in events[2:-1]:
        index = e.get("output_index")
        if e["type"] == "response.output_item.added":
            assert index not in opened
            opened[index] = e["item"]["id"]
        elif e["type"] == "response.output_item.done":
            assert opened[index] == e["item"]["id"]
            done.add(index)
        else:  # every other event belongs to an item that is open and not done
            assert index in opened and index not in done
            assert e["item_id"] == opened[index]
    assert done == set(opened)
    final = events[-1]["response"]["output"]
    assert [item["id"] for item in final] == [opened[i] for i in sorted(opened)]
    texts = "".join(v for k, v in pieces if k == "text")
    streamed = "".join(p["text"] for i in final if i["type"] == "message" for p in i["content"])
    assert streamed == texts


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
item = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["message", "function_call", "function_call_output", "reasoning", "x"]
        ),
        "role": st.sampled_from(["user", "assistant", "tool", "x"]),
        "content": json_value,
        "call_id": json_value,
        "name": json_value,
        "arguments": json_value,
        "output": json_value,
    },
)
body = st.fixed_dictionaries(
    {"model": st.just("m"), "input": st.text(max_size=5) | st.lists(item, max_size=4)},
    optional={
        "tools": st.lists(
            st.dictionaries(st.sampled_from(["type", "name", "parameters"]), json_value), max_size=2
        ),
        "tool_choice": st.text(max_size=5)
        | st.dictionaries(st.sampled_from(["type", "name", "tools"]), json_value),
        "text": st.dictionaries(st.sampled_from(["format", "verbosity"]), json_value),
        "reasoning": st.dictionaries(st.sampled_from(["effort", "summary"]), json_value),
    },
)


@given(body)
def test_any_request_translates_or_is_a_clear_400(raw: dict[str, Any]) -> None:
    """Malformed items, tools or formats never escape as anything but a TurnoutError."""
    try:
        request = ResponsesRequest.model_validate(raw)
    except ValueError:
        return  # the request model's own 400/422 (parse_responses_request)
    try:
        chat = to_chat_request(request)
    except TurnoutError as exc:
        assert exc.status_code in (400, 422) and exc.message
    else:
        assert chat.model == "m"
