"""Legacy completions passed through to an upstream that offers them
(``native: [completions]`` on the provider, as for vLLM or Ollama), over loopback
HTTP with the official openai SDK; translated to a chat turn for the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from turnout.errors import PolicyError

from tests.fakes.openai_upstream import FakeOpenAI, Fault

from .conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
providers:
  vllm: {{type: openai, base_url: "{url}", api_key: test-key, native: [completions]}}
  chat: {{type: openai, base_url: "{url}", api_key: test-key}}
defaults:
  retry: {{attempts: 1, backoff: 1ms}}
routes:
  - {{name: native, match: {{model: native}}, targets: [vllm/llama-3]}}
  - {{name: chat-only, match: {{model: chat-only}}, targets: [chat/gpt-4o]}}
  - name: chat-then-native
    match: {{model: chat-then-native}}
    targets: [chat/gpt-4o]
    fallbacks: [vllm/llama-3]
  - name: native-then-chat
    match: {{model: native-then-chat}}
    targets: [vllm/llama-3]
    fallbacks: [chat/gpt-4o]
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("native") / "routes.yaml"
    path.write_text(POLICY.format(url=fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI) -> None:
    fake.reset()


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return gateway.client()


def test_a_native_target_gets_the_completion_request_as_written(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    answer = client.completions.create(
        model="native", prompt=["first one", "second one"], max_tokens=20, suffix="!",
        extra_body={"fallbacks": ["chat/gpt-4o"], "top_k": 5},
    )  # fmt: skip
    sent = fake.requests[-1]
    assert sent.path == "/v1/completions"
    assert sent.body == {"model": "llama-3", "prompt": ["first one", "second one"],
                         "max_tokens": 20, "suffix": "!", "top_k": 5}  # fmt: skip
    assert [c.text for c in answer.choices] == ["echo: first one", "echo: second one"]
    assert answer.usage is not None and answer.usage.prompt_tokens == 4
    assert answer.model_extra["extra_fields"]["request_type"] == "text.completion"  # type: ignore[index]


def test_a_native_stream_is_relayed_with_its_done(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    chunks = list(client.completions.create(model="native", prompt="Go on", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: Go on"
    assert fake.requests[-1].path == "/v1/completions"
    assert fake.requests[-1].body["stream"] is True


def test_several_prompts_skip_a_chat_target_for_a_native_one(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    answer = client.completions.create(model="chat-then-native", prompt=["a b", "c d"])
    assert len(answer.choices) == 2
    assert [r.path for r in fake.requests] == ["/v1/completions"]


def test_several_prompts_with_no_native_target_are_a_400_naming_prompt(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError, match="one prompt") as info:
        client.completions.create(model="chat-only", prompt=["a", "b"])
    assert info.value.body["param"] == "prompt"  # type: ignore[index]


def test_a_failing_native_target_falls_back_to_a_chat_turn(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(503))
    answer = client.completions.create(model="native-then-chat", prompt="Hello")
    assert answer.choices[0].text == "echo: Hello"
    assert [r.path for r in fake.requests] == ["/v1/completions", "/v1/chat/completions"]


def test_a_type_that_cannot_serve_a_surface_natively_is_a_policy_error(tmp_path: Path) -> None:
    from turnout import Engine

    with pytest.raises(PolicyError, match="cannot serve 'messages' natively"):
        Engine.from_yaml("version: 1\nproviders: {m: {type: mock, native: [messages]}}\n"
                         "routes: [{name: r, match: {model: x}, targets: [m/x]}]\n")  # fmt: skip
