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

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout.errors import FailureClass, ProviderError
from turnout.policy.redaction import provider_secrets, redact_error, redact_json, redact_text

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.http.conftest import RunningGateway, start_gateway

KEY = "sk-leaky-key-4f1c9a2e7b3d"  # the key the upstream is called with
SPARE = "sk-spare-key-8e6d2c4a1f9b"  # another provider's key
HEADER = "hdr-token-5a7c9e1b3d"  # a secret header of the first provider
OPTION = "aws-secret-0b2d4f6h8j"  # a secret in a provider's options
SECRETS = (KEY, SPARE, HEADER, OPTION)
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
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("redaction") / "routes.yaml"
    path.write_text(POLICY.replace("{fake}", fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI) -> None:
    fake.reset()


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
    assert redact_error(error, secrets).message == "got *** and ***"
    assert redact_error(error, ()) is error
    assert redact_json({"a": [1, "sk-abcdefgh"]}, secrets) == {"a": [1, "***"]}


ALPHABETS = ("abcdefgh", "ijklmnop", "qrstuvwx", "ABCDEFGH")


@st.composite
def disjoint_secrets(draw: st.DrawFn) -> list[str]:
    """Up to four secrets that share no character, so none can overlap another."""
    count = draw(st.integers(1, len(ALPHABETS)))
    return [draw(st.text(st.sampled_from(a), min_size=8, max_size=16)) for a in ALPHABETS[:count]]


@settings(max_examples=60, deadline=None)
@given(disjoint_secrets(), st.lists(st.text(max_size=10) | st.integers(0, 3), max_size=12))
def test_no_secret_survives_redaction_wherever_it_sits(secrets: list[str], parts: list) -> None:
    ordered = tuple(sorted(secrets, key=len, reverse=True))
    text = "".join(secrets[p % len(secrets)] if isinstance(p, int) else p for p in parts)
    nested = json.dumps(redact_json({"nested": [text, {text: text}]}, ordered))
    for secret in secrets:
        assert secret not in redact_text(text, ordered) and secret not in nested
