"""The Responses API over real loopback HTTP, with the official openai SDK as client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import RunningGateway

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_a_plain_response_has_text_usage_and_the_route(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="upstream", input="hello there", instructions="Be brief."
    )
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == "echo: hello there"
    assert response.id.startswith("resp_")
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert raw.headers["x-turnout-route"] == "upstream"
    assert raw.headers["x-turnout-provider"] == "fake"
    assert response.model_extra["extra_fields"]["request_type"] == "responses.completion"  # type: ignore[index]


def test_instructions_and_options_reach_the_upstream_as_chat(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    client.responses.create(
        model="upstream",
        instructions="Be brief.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        max_output_tokens=50,
        reasoning={"effort": "low"},
        metadata={"team": "search"},
        text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
    )
    body = fake.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert body["max_completion_tokens"] == 50
    assert body["reasoning_effort"] == "low"
    assert body["metadata"] == {"team": "search"}
    assert body["response_format"]["json_schema"]["name"] == "out"


def test_max_output_tokens_reached_is_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="upstream", input="one two three four five", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_a_streamed_response_parses_in_the_sdk_stream_helper(client: openai.OpenAI) -> None:
    with client.responses.stream(model="upstream", input="streaming works") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "echo: streaming works"
    assert final.output_text == "echo: streaming works"
    assert final.usage is not None


def test_a_streamed_tool_call_has_its_arguments(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="upstream", input="call_tool please", tools=[TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.arguments == "{}"


def test_a_tool_round_trip(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    first = client.responses.create(model="upstream", input="call_tool now", tools=[TOOL])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    second = client.responses.create(
        model="upstream",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[TOOL],
    )
    assert second.output_text == "echo: call_tool now"
    messages = fake.requests[-1].body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


def test_retrieve_input_items_and_delete(client: openai.OpenAI) -> None:
    made = client.responses.create(model="smart", input="remember me")
    got = client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == made.output_text
    items = client.responses.input_items.list(made.id)
    assert [i.content[0].text for i in items.data] == ["remember me"]  # type: ignore[union-attr]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError, match="no stored response"):
        client.responses.retrieve(made.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    made = client.responses.create(model="smart", input="forget me", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError, match="no stored response") as info:
        client.responses.create(model="smart", input="again", previous_response_id=made.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_a_built_in_tool_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="web_search") as info:
        client.responses.create(model="smart", input="news?", tools=[{"type": "web_search"}])
    assert info.value.body["param"] == "tools[0].type"  # type: ignore[index]


def test_no_input_and_bad_json_are_clear_errors(gateway: RunningGateway) -> None:
    answer = httpx.post(gateway.url + "/v1/responses", json={"model": "smart"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "input"
    answer = httpx.post(gateway.url + "/v1/responses", content=b"{nope")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json"
    answer = httpx.put(gateway.url + "/v1/responses/resp_x")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, DELETE"


def test_a_failure_before_the_stream_is_a_json_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):  # noqa: SIM117
        with client.responses.stream(model="broken", input="hi") as stream:
            list(stream)


def test_a_failure_mid_stream_is_response_failed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="midway", input="one two three four", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]
    assert "mid-stream" in events[-1].response.error.message  # type: ignore[union-attr]
    assert "response.output_text.delta" in [e.type for e in events]
