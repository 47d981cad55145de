"""``/v1/messages`` as a Claude-style client sees it: the official anthropic SDK
over loopback HTTP against a real gateway, with the strict fake Anthropic
upstream (native passthrough) and the strict fake OpenAI upstream (translation)
behind it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Fault as AnthropicFault
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_upstream import Fault as OpenAIFault

from .conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
providers:
  claude: {{type: anthropic, base_url: "{claude}", api_key: sk-ant-test}}
  gpt: {{type: openai, base_url: "{gpt}", api_key: test-key}}
  mock: {{type: mock}}
defaults:
  retry: {{attempts: 1, backoff: 1ms}}
routes:
  - name: native
    match: {{model: claude-sonnet-4-5}}
    targets: [claude/claude-sonnet-4-5]
  - name: translated
    match: {{model: gpt}}
    targets: [gpt/gpt-4o]
  - name: claude-then-gpt
    match: {{model: claude-or-gpt}}
    targets: [claude/claude-sonnet-4-5]
    fallbacks: [gpt/gpt-4o]
  - name: gpt-then-claude
    match: {{model: gpt-or-claude}}
    targets: [gpt/gpt-4o]
    fallbacks: [claude/claude-sonnet-4-5]
  - name: offline
    match: {{model: smart}}
    targets: [mock/echo]
  - name: cached
    match: {{model: cached-claude}}
    targets: [claude/claude-sonnet-4-5]
    cache: {{ttl: 10m, sampled: true}}
"""

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    with FakeAnthropic(api_key="sk-ant-test") as claude, FakeOpenAI() as gpt:
        yield claude, gpt


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstreams: tuple[FakeAnthropic, FakeOpenAI]
) -> Iterator[RunningGateway]:
    claude, gpt = upstreams
    path: Path = tmp_path_factory.mktemp("messages") / "routes.yaml"
    path.write_text(POLICY.format(claude=claude.base_url, gpt=gpt.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset(upstreams: tuple[FakeAnthropic, FakeOpenAI]) -> None:
    for fake in upstreams:
        fake.reset()


@pytest.fixture
def claude(upstreams: tuple[FakeAnthropic, FakeOpenAI]) -> FakeAnthropic:
    return upstreams[0]


@pytest.fixture
def gpt(upstreams: tuple[FakeAnthropic, FakeOpenAI]) -> FakeOpenAI:
    return upstreams[1]


@pytest.fixture
def client(gateway: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="any", max_retries=0)


def hello(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hello there"}], **extra}  # fmt: skip


# -- native passthrough ------------------------------------------------------


def test_a_native_target_gets_the_body_as_written_and_its_answer_comes_back_as_sent(
    gateway: RunningGateway, claude: FakeAnthropic
) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
        "tools": [
            {
                "name": "lookup",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
        ],
        "messages": [
            {"role": "user", "content": "What is up?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "They ask.", "signature": "sig-abc"},
                    {"type": "text", "text": "Let me look."},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Go on", "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
    }
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14",
               "x-api-key": "caller"}  # fmt: skip
    reply = httpx.post(gateway.url + "/v1/messages?beta=true", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    sent = claude.requests[-1]
    assert sent.body == body  # unchanged: cache_control, signed thinking, server tools, metadata
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["x-api-key"] == "sk-ant-test"  # the policy's key, never the caller's
    answer = reply.json()
    assert answer["content"][0]["type"] == "thinking"
    assert answer["content"][0]["signature"].startswith("sig_")
    assert answer["usage"]["cache_creation_input_tokens"] > 0
    assert "extra_fields" not in answer
    assert reply.headers["x-turnout-route"] == "native"
    assert reply.headers["x-turnout-provider"] == "claude"
    assert reply.headers["request-id"] == reply.headers["x-request-id"]


def test_a_native_stream_is_relayed_and_the_sdk_helpers_read_it(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Stream it"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: Stream it"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature.startswith("sig_")  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert claude.requests[-1].body["stream"] is True


def test_count_tokens_is_exact_from_a_native_target(
    gateway: RunningGateway, client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    count = client.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "one two three"}]
    )
    assert count.input_tokens == 4  # the fake counts words, plus one
    assert claude.requests[-1].path == "/v1/messages/count_tokens"
    raw = httpx.post(gateway.url + "/v1/messages/count_tokens",
                     json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert raw.headers["x-turnout-token-count"] == "exact"


def test_count_tokens_is_an_estimate_said_so_where_the_target_cannot_count(
    gateway: RunningGateway, gpt: FakeOpenAI
) -> None:
    raw = httpx.post(gateway.url + "/v1/messages/count_tokens",
                     json={"model": "gpt", "messages": [{"role": "user", "content": "hi " * 40}]})  # fmt: skip
    assert raw.status_code == 200
    assert raw.headers["x-turnout-token-count"] == "estimate"
    assert 20 < raw.json()["input_tokens"] < 60
    assert gpt.requests == []  # nothing was sent to count


# -- translation to chat completions -----------------------------------------


def test_a_chat_target_answers_a_messages_request(
    client: anthropic.Anthropic, gpt: FakeOpenAI
) -> None:
    message = client.messages.create(
        model="gpt",
        max_tokens=100,
        system="You are terse.",
        stop_sequences=["STOP"],
        metadata={"user_id": "u-7"},
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: Hello"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = gpt.requests[-1].body
    assert sent["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "You are terse."}],
    }
    assert sent["stop"] == ["STOP"] and sent["user"] == "u-7" and sent["max_tokens"] == 100


def test_tools_round_trip_through_a_chat_target(
    client: anthropic.Anthropic, gpt: FakeOpenAI
) -> None:
    tool = {"name": "lookup", "description": "Look up", "input_schema": {
        "type": "object", "properties": {"q": {"type": "string"}}}}  # fmt: skip
    first = client.messages.create(
        model="gpt", max_tokens=100, tools=[tool], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "call_tool please"}],
    )  # fmt: skip
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "lookup" and isinstance(use.input, dict)
    sent = gpt.requests[-1].body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["parameters"]["properties"] == {"q": {"type": "string"}}
    second = client.messages.create(
        model="gpt", max_tokens=100, tools=[tool],
        messages=[
            {"role": "user", "content": "call_tool please"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": "42"}]},
        ],
    )  # fmt: skip
    assert second.content[0].text  # type: ignore[union-attr]
    history = gpt.requests[-1].body["messages"]
    assert history[1]["tool_calls"][0]["id"] == use.id
    assert history[2] == {"role": "tool", "tool_call_id": use.id, "content": "42"}


def test_a_streamed_translation_has_the_events_the_sdk_needs(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="gpt", max_tokens=100, messages=[{"role": "user", "content": "Hi stream"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start"
    assert "content_block_start" in events and "content_block_stop" in events
    assert events[-2:] == ["message_delta", "message_stop"]
    assert final.content[0].text == "echo: Hi stream"  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


def test_images_are_translated_to_image_parts(client: anthropic.Anthropic, gpt: FakeOpenAI) -> None:
    client.messages.create(
        model="gpt", max_tokens=50,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "What is this?"},
        ]}],
    )  # fmt: skip
    part = gpt.requests[-1].body["messages"][0]["content"][0]
    assert part == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


def test_thinking_becomes_a_reasoning_effort_for_a_chat_target(
    client: anthropic.Anthropic, gpt: FakeOpenAI
) -> None:
    client.messages.create(
        model="gpt", max_tokens=10000, thinking={"type": "enabled", "budget_tokens": 8000},
        messages=[{"role": "user", "content": "Think"}],
    )  # fmt: skip
    assert gpt.requests[-1].body["reasoning_effort"] == "medium"


def test_a_server_tool_skips_a_chat_target_for_a_native_one(
    gateway: RunningGateway, claude: FakeAnthropic, gpt: FakeOpenAI
) -> None:
    body = hello("gpt-or-claude", tools=[{"type": "web_search_20250305", "name": "web_search"}])
    reply = httpx.post(gateway.url + "/v1/messages", json=body)
    assert reply.status_code == 200, reply.text
    assert gpt.requests == [] and len(claude.requests) == 1
    assert reply.headers["x-turnout-provider"] == "claude"


def test_a_server_tool_no_target_can_run_is_a_400_naming_it(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="web_search") as info:
        client.messages.create(
            model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        )  # fmt: skip
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


# -- fallbacks and errors ----------------------------------------------------


def test_an_overloaded_native_target_falls_back_to_a_chat_target(
    client: anthropic.Anthropic, claude: FakeAnthropic, gpt: FakeOpenAI
) -> None:
    claude.script(AnthropicFault.status(529))
    message = client.messages.create(
        model="claude-or-gpt", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "echo: Hi"  # type: ignore[union-attr]
    assert len(gpt.requests) == 1


def test_a_stream_falls_back_before_its_first_byte(
    client: anthropic.Anthropic, claude: FakeAnthropic, gpt: FakeOpenAI
) -> None:
    claude.script(AnthropicFault.status(529))
    with client.messages.stream(
        model="claude-or-gpt", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        assert "".join(stream.text_stream) == "echo: Hi"
    assert gpt.requests[-1].body["stream"] is True


def test_an_upstream_failing_mid_stream_ends_with_an_error_event(
    gateway: RunningGateway, claude: FakeAnthropic
) -> None:
    claude.script(AnthropicFault.error_body_200())
    with httpx.stream("POST", gateway.url + "/v1/messages",
                      json=hello("claude-sonnet-4-5", stream=True)) as reply:  # fmt: skip
        text = reply.read().decode()
    assert reply.status_code in (200, 529)
    if reply.status_code == 200:
        assert "event: error" in text and "message_stop" not in text
    else:  # the error came before anything was relayed: an Anthropic-shaped error
        assert json.loads(text)["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        (OpenAIFault.status(429, retry_after=7), anthropic.RateLimitError, 429),
        # the upstream refusing the gateway's own key is the gateway's fault, not the caller's
        (OpenAIFault.status(401), anthropic.InternalServerError, 500),
        (OpenAIFault.status(503), anthropic.InternalServerError, 529),
    ],
)
def test_errors_reach_the_sdk_as_its_own_classes(
    client: anthropic.Anthropic, gpt: FakeOpenAI, fault: OpenAIFault, error: type, status: int
) -> None:
    gpt.script(fault)
    with pytest.raises(error) as info:
        client.messages.create(
            model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.body["type"] == "error"  # type: ignore[attr-defined]
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"  # type: ignore[attr-defined]


def test_bad_requests_are_400s_in_anthropic_shape(gateway: RunningGateway) -> None:
    for body in (b"{not json", b'{"model": "gpt", "messages": []}', b'{"model": "gpt"}'):
        reply = httpx.post(gateway.url + "/v1/messages", content=body)
        assert reply.status_code == 400, body
        error = reply.json()
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    unknown = httpx.post(gateway.url + "/v1/messages", json=hello("no-such-model"))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"


def test_extra_fields_only_when_asked(gateway: RunningGateway) -> None:
    plain = httpx.post(gateway.url + "/v1/messages", json=hello("smart")).json()
    assert "extra_fields" not in plain
    asked = httpx.post(gateway.url + "/v1/messages", json=hello("smart"),
                       headers={"x-turnout-extra-fields": "true"}).json()  # fmt: skip
    assert asked["extra_fields"]["request_type"] == "messages"
    assert asked["extra_fields"]["route"] == "offline"


def test_gateway_keys_authenticate_with_x_api_key_and_refuse_in_anthropic_shape(
    tmp_path: Path,
) -> None:
    from turnout.policy.limits import hash_key

    policy = tmp_path / "routes.yaml"
    policy.write_text(
        "version: 1\nproviders: {mock: {type: mock}}\n"
        "routes:\n  - {name: offline, match: {model: smart}, targets: [mock/echo]}\n"
        "  - {name: other, match: {model: other}, targets: [mock/other]}\n"
        f"keys:\n  salt: s4lt-s4lt-s4lt-s4lt\n  clients:\n"
        f'    alice: {{hash: "{hash_key("s4lt-s4lt-s4lt-s4lt", "sk-alice")}", routes: [offline]}}\n'
    )
    running = start_gateway(policy)
    try:
        good = anthropic.Anthropic(base_url=running.url, api_key="sk-alice", max_retries=0)
        message = good.messages.create(
            model="smart", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].text  # type: ignore[union-attr]
        bearer = httpx.post(running.url + "/v1/messages", json=hello("smart"),
                            headers={"authorization": "Bearer sk-alice"})  # fmt: skip
        assert bearer.status_code == 200
        bad = anthropic.Anthropic(base_url=running.url, api_key="sk-nobody", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(
                model="smart", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        with pytest.raises(anthropic.PermissionDeniedError):
            good.messages.create(
                model="other", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    finally:
        running.stop()


def test_a_native_answer_is_cached_with_its_thinking_and_told_apart_by_cache_control(
    gateway: RunningGateway, claude: FakeAnthropic
) -> None:
    body = hello("cached-claude", max_tokens=2048,
                 thinking={"type": "enabled", "budget_tokens": 1024})  # fmt: skip
    first = httpx.post(gateway.url + "/v1/messages", json=body)
    again = httpx.post(gateway.url + "/v1/messages", json=body)
    assert first.headers["x-turnout-cache"] == "MISS"
    assert again.headers["x-turnout-cache"] == "HIT"
    assert again.json()["content"] == first.json()["content"]  # the signed thinking block too
    assert len(claude.requests) == 1
    marked = {
        **body,
        "system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
    }
    other = {**body, "system": [{"type": "text", "text": "x"}]}
    httpx.post(gateway.url + "/v1/messages", json=marked)
    assert httpx.post(gateway.url + "/v1/messages", json=other).headers["x-turnout-cache"] == "MISS"
    assert len(claude.requests) == 3


def test_a_native_answer_or_event_that_echoes_a_provider_key_reaches_the_caller_masked(
    gateway: RunningGateway, client: anthropic.Anthropic
) -> None:
    leak = [{"role": "user", "content": "my key is sk-ant-test ok"}]
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=leak)
    assert message.content[0].text == "echo: my key is *** ok"  # type: ignore[union-attr]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=leak) as stream:
        text = "".join(stream.text_stream)
    assert "sk-ant-test" not in text and "***" in text


def test_fallbacks_by_shape_the_seeds_are_routed_anthropics_go_upstream(
    gateway: RunningGateway, claude: FakeAnthropic, gpt: FakeOpenAI
) -> None:
    claude.script(AnthropicFault.status(529))
    ours = httpx.post(gateway.url + "/v1/messages",
                      json=hello("claude-sonnet-4-5", fallbacks=["gpt/gpt-4o"]))  # fmt: skip
    assert ours.status_code == 200, ours.text
    assert ours.headers["x-turnout-provider"] == "gpt"
    assert "fallbacks" not in claude.requests[-1].body and "fallbacks" not in gpt.requests[-1].body
    theirs = hello("claude-sonnet-4-5", fallbacks=[{"model": "claude-haiku-4-5"}])
    sent = httpx.post(gateway.url + "/v1/messages", json=theirs)
    assert sent.status_code == 200, sent.text
    assert claude.requests[-1].body["fallbacks"] == [{"model": "claude-haiku-4-5"}]
    refused = httpx.post(gateway.url + "/v1/messages", json={**theirs, "model": "gpt"})
    assert refused.status_code == 400 and "fallbacks" in refused.json()["error"]["message"]
