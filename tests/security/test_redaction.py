"""No configured secret comes back from an upstream to a caller, over a real gateway
on loopback (docs/security.md points here): an upstream that echoes the keys it
holds, or any other provider's, in an error's message or code, in a body it calls
a success, or in fields turnout passes on (``raw_response``, unknown fields),
reaches the caller with each one masked as ``***``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout.errors import FailureClass, ProviderError
from turnout.policy.redaction import Redactor, provider_secrets

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_wire import error_body
from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.fakes.openai_wire import Completion
from tests.fakes.server import Reply
from tests.fakes.upstream import Call
from tests.http.conftest import RunningGateway, start_gateway

KEY = "sk-leaky-key-4f1c9a2e7b3d"  # the key the upstream is called with
SPARE = "sk-spare-key-8e6d2c4a1f9b"  # another provider's key
HEADER = "hdr-token-5a7c9e1b3d"  # a secret header of the first provider
OPTION = "aws-secret-0b2d4f6h8j"  # a secret in a provider's options
ANT = "sk-ant-leaky-3c5e7a9b1d"  # an Anthropic provider's key (native /v1/messages)
SECRETS = (KEY, SPARE, HEADER, OPTION, ANT)
ECHO = " ".join(SECRETS)

POLICY = f"""\
version: 1
providers:
  fake:
    type: openai
    base_url: "{{fake}}"
    api_key: {KEY}
    raw_response: true
    headers: {{x-vendor-token: "{HEADER}"}}
  spare: {{type: openai, base_url: "{{fake}}", api_key: {SPARE}}}
  claude: {{type: anthropic, base_url: "{{claude}}", api_key: {ANT}}}
  chatty: {{type: openai, base_url: "{{chatty}}", api_key: {KEY}}}
  aws:
    type: bedrock
    options: {{region: us-east-1, access_key_id: AKIAEXAMPLE, secret_access_key: {OPTION}}}
defaults:
  retry: {{attempts: 1}}
routes:
  - name: leaky
    match: {{model: leaky}}
    targets: [fake/gpt-4o]
  - name: leaky-then-spare
    match: {{model: leaky-then-spare}}
    targets: [fake/gpt-4o]
    fallbacks: [spare/gpt-4o]
  - name: chatty
    match: {{model: chatty}}
    targets: [chatty/gpt-4o]
  - name: native
    match: {{model: claude-sonnet-4-5}}
    targets: [claude/claude-sonnet-4-5]
"""

ERROR = {"error": {"message": f"Incorrect API key provided: {ECHO}.", "type": "invalid_request_error", "code": f"bad_key_{KEY}", "param": None}}  # fmt: skip
SUCCESS = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "debug": {"sent_headers": {"authorization": f"Bearer {KEY}", SPARE: [HEADER, OPTION]}},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as upstream:
        yield upstream


class ChattyOpenAI(FakeOpenAI):
    """Streams chat completions whose every chunk carries a field naming the keys."""

    def answer(self, call: Call) -> Reply:
        if not (isinstance(call.body, dict) and call.body.get("stream")):
            return super().answer(call)
        events = []
        for event in Completion(call.body, "chatcmpl-" + call.ident, None).events():
            if event.startswith(b"data: {"):
                chunk = json.loads(event[len(b"data: ") :])
                event = b"data: " + json.dumps({**chunk, "debug": ECHO}).encode() + b"\n\n"
            events.append(event)
        return self.send(call, events=events)


@pytest.fixture(scope="module")
def chatty() -> Iterator[ChattyOpenAI]:
    with ChattyOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    chatty: ChattyOpenAI,
) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("redaction") / "routes.yaml"
    text = POLICY.replace("{fake}", fake.base_url).replace("{claude}", claude.base_url)
    path.write_text(text.replace("{chatty}", chatty.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI, claude: FakeAnthropic) -> None:
    fake.reset()
    claude.reset()


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def call(gateway: RunningGateway, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "fault",
    [Fault.status(401, body=ERROR), Fault.status(500, body=ERROR), Fault.status(200, body=ERROR)],
    ids=["401", "500", "error in a 200"],
)
def test_an_upstream_error_echoing_the_secrets_reaches_the_caller_masked(
    gateway: RunningGateway, fake: FakeOpenAI, fault: Fault, stream: bool
) -> None:
    fake.script(fault)
    response = call(gateway, "leaky", stream)
    assert response.status_code >= 400, response.text
    text = str(response.headers) + response.text
    assert leaks(text) == [] and "***" in response.json()["error"]["message"]
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"  # the key was sent


def test_the_upstream_code_and_the_attempt_trail_are_masked_too(
    gateway: RunningGateway, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(Fault.status(400, body=ERROR))
    with caplog.at_level(logging.INFO):
        response = call(gateway, "leaky")
        gateway.wait_for(lambda: any("leaky" in r.getMessage() for r in caplog.records), "a log")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_key_***"
    assert leaks(json.dumps(response.json()["extra_fields"]["attempts"])) == []
    assert leaks("".join(r.getMessage() for r in caplog.records)) == []


def test_the_sdk_sees_a_masked_error_even_after_a_fallback(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(500, body=ERROR), Fault.status(500, body=ERROR))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="leaky-then-spare", messages=[{"role": "user", "content": "hi"}]
        )
    assert len(fake.requests) == 2 and leaks(info.value.response.text) == []


def test_raw_response_and_unknown_fields_of_a_success_are_masked(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(200, body=SUCCESS))
    response = call(gateway, "leaky")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert leaks(response.text) == []
    raw = answer["extra_fields"]["raw_response"]
    assert raw["debug"]["sent_headers"] == {"authorization": "Bearer ***", "***": ["***", "***"]}
    assert answer["debug"] == raw["debug"]  # the unknown field passed on to the caller
    assert answer["choices"][0]["message"]["content"] == "hi"


def test_unknown_fields_of_streamed_chunks_are_masked(gateway: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="chatty", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert chunks and all(c.model_extra["debug"] == " ".join(["***"] * 5) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"


MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
    "debug": {"x-api-key": ANT, "seen": [KEY, SPARE]},
}


@pytest.mark.parametrize("stream", [False, True])
def test_a_native_messages_error_echoing_the_secrets_reaches_the_caller_masked(
    gateway: RunningGateway, claude: FakeAnthropic, stream: bool
) -> None:
    claude.script(Fault.status(401, body=error_body(401, f"invalid x-api-key: {ECHO}")))
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
        )
    text = str(info.value.response.headers) + info.value.response.text
    assert leaks(text) == [] and "***" in text
    assert claude.requests[-1].headers["x-api-key"] == ANT


def test_a_native_message_passes_unknown_fields_on_masked(
    gateway: RunningGateway, claude: FakeAnthropic
) -> None:
    claude.script(Fault.status(200, body=MESSAGE))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    headers = {"anthropic-version": "2023-06-01"}
    response = httpx.post(gateway.url + "/v1/messages", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert leaks(response.text) == []
    answer = response.json()
    assert answer["debug"] == {"x-api-key": "***", "seen": ["***", "***"]}
    assert answer["content"] == [{"type": "text", "text": "hi"}]


# -- the pieces, without a gateway --------------------------------------------------


def test_the_policy_secrets_are_its_keys_secret_headers_and_options(
    gateway: RunningGateway,
) -> None:
    assert gateway.engine is not None
    secrets = provider_secrets(gateway.engine.table.providers.values())
    # the access key id is named a key too (masked: it names the account); the region is not
    assert set(secrets) == {*SECRETS, "AKIAEXAMPLE"}
    assert gateway.engine.table.secrets == secrets


def test_a_secret_inside_a_longer_one_is_masked_whole() -> None:
    secrets = ("sk-abcdefgh-longer", "sk-abcdefgh")
    error = ProviderError(FailureClass.AUTH, "got sk-abcdefgh-longer and sk-abcdefgh", code="x")
    assert Redactor(secrets).error(error).message == "got *** and ***"
    assert Redactor(()).error(error) is error and not Redactor(())
    assert Redactor(secrets).json({"a": [1, "sk-abcdefgh"]}) == {"a": [1, "***"]}
    clean = {"a": ["nothing here"]}
    assert Redactor(secrets).json(clean) is clean


ALPHABETS = ("abcdefgh", "ijklmnop", "qrstuvwx", "ABCDEFGH")


@st.composite
def disjoint_secrets(draw: st.DrawFn) -> list[str]:
    """Up to four secrets that share no character, so none can overlap another."""
    count = draw(st.integers(1, len(ALPHABETS)))
    return [draw(st.text(st.sampled_from(a), min_size=8, max_size=16)) for a in ALPHABETS[:count]]


@settings(max_examples=60, deadline=None)
@given(disjoint_secrets(), st.lists(st.text(max_size=10) | st.integers(0, 3), max_size=12))
def test_no_secret_survives_redaction_wherever_it_sits(secrets: list[str], parts: list) -> None:
    redactor = Redactor(tuple(secrets))
    text = "".join(secrets[p % len(secrets)] if isinstance(p, int) else p for p in parts)
    nested = json.dumps(redactor.json({"nested": [text, {text: text}]}))
    for secret in secrets:
        assert secret not in redactor.text(text) and secret not in nested
