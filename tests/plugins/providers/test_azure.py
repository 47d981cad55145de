"""The ``azure`` provider through the engine, over loopback HTTP against
``FakeAzureOpenAI`` (the fake OpenAI upstream behind Azure's deployment paths,
``api-version`` query and ``api-key`` header, answering with Azure's errors)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import turnout.plugins.providers.azure as azure_plugin
from turnout import PolicyError, TurnoutError
from turnout.contract.provider import ProviderSettings
from turnout.contract.registry import DEFAULT_PLUGINS
from turnout.plugins.providers.azure import DEFAULT_API_VERSION, AzureProvider, _all_filtered
from turnout.wire.chat import ChatResponse

from tests.conftest import user
from tests.fakes.azure_upstream import FakeAzureOpenAI
from tests.fakes.faults import Fault
from tests.fakes.openai_upstream import FakeOpenAI

KEY = "azure-key-0123456789abcdef"
# passed explicitly until the module is a built-in (turnout.contract.registry.DEFAULT_PLUGINS)
PLUGINS = [] if "turnout.plugins.providers.azure" in DEFAULT_PLUGINS else [azure_plugin]

POLICY = """
providers:
  az:
    type: azure
    base_url: {url}
    api_key: {key}
    options: {options}
  backup:
    type: openai
    base_url: {backup}
    api_key: sk-backup
routes:
  - name: r
    match: {{model: r}}
    targets: [az/gpt-4o]
    fallbacks: [backup/gpt-4o-mini]
    retry: {{attempts: 1}}
  - name: direct
    match: {{model: "*/*"}}
"""

CONTENT_FILTER_ERROR: dict[str, Any] = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy. Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": True, "severity": "high"},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": False, "severity": "safe"},
            },
        },
    }
}

FILTERED_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-filtered",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None},
            "finish_reason": "content_filter",
            "content_filter_results": {"hate": {"filtered": True, "severity": "high"}},
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12},
}


@pytest.fixture(scope="module")
def fake_azure() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI(keys=[KEY], deployments=["gpt-4o", "my deployment"]) as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_backup() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def az(make_engine, fake_azure, fake_backup):
    """Build an engine whose ``az`` provider has the given options and key."""
    fake_azure.reset()
    fake_backup.reset()

    def build(options: str = "{}", key: str = KEY):
        text = POLICY.format(
            url=fake_azure.base_url, key=key, options=options, backup=fake_backup.base_url
        )
        return make_engine(text, plugins=PLUGINS)

    return build


def query(path: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)


async def test_chat_goes_to_the_deployment_with_api_version_and_api_key(az, fake_azure):
    response = await az().chat(user("hello azure", model="r"))
    assert response.choices[0].message.content == "echo: hello azure"
    assert response.extra_fields.provider == "az"
    sent = fake_azure.requests[-1]
    assert sent.path.startswith("/openai/deployments/gpt-4o/chat/completions?")
    assert query(sent.path) == {"api-version": [DEFAULT_API_VERSION]}
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert response.extra_fields.cost is not None and response.extra_fields.cost > 0


async def test_api_version_and_bearer_auth_from_options(az, fake_azure):
    built = az('{api_version: "2025-04-01-preview", auth: bearer}')
    await built.chat(user(model="az/my deployment"))
    sent = fake_azure.requests[-1]
    assert sent.path.startswith("/openai/deployments/my%20deployment/chat/completions?")
    assert query(sent.path) == {"api-version": ["2025-04-01-preview"]}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "api-key" not in sent.headers


async def test_v1_api_has_no_api_version_and_sends_the_deployment_as_model(az, fake_azure):
    built = az("{api_version: v1}")
    response = await built.chat(user("v1 please", model="az/gpt-4o"))
    assert response.choices[0].message.content == "echo: v1 please"
    sent = fake_azure.requests[-1]
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.body["model"] == "gpt-4o"


async def test_streaming_text_with_usage(az, fake_azure):
    stream = az().stream(user("stream from azure", model="az/gpt-4o", stream=True))
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream from azure"
    assert stream.extra_fields.billed_usage.completion_tokens > 0
    sent = fake_azure.requests[-1]
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.headers["api-key"] == KEY


async def test_tools_round_trip(az):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    response = await az().chat(user("please call_tool", model="az/gpt-4o", tools=tools))
    call = response.choices[0].message.tool_calls[0]
    assert call["function"]["name"] == "lookup"
    assert response.choices[0].finish_reason == "tool_calls"


async def test_a_wrong_key_is_an_auth_failure_and_falls_back(az, fake_backup):
    response = await az(key="not-the-key-at-all").chat(user(model="r"))
    assert [(a.provider, a.outcome) for a in response.extra_fields.attempts] == [
        ("az", "auth"),
        ("backup", "ok"),
    ]
    assert "not-the-key" not in (response.extra_fields.attempts[0].message or "")


async def test_an_unknown_deployment_is_reported_as_azure_words_it(az):
    with pytest.raises(TurnoutError) as info:
        await az().chat(user(model="az/no-such-deployment"))
    assert info.value.status_code == 404
    assert "deployment for this resource does not exist" in info.value.message


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault.status(429, retry_after=1), "rate_limited"),
        (Fault.status(503), "overloaded"),
        (Fault.status(500), "server_error"),
        (Fault.status(400, body=CONTENT_FILTER_ERROR), "content_filter"),
        (Fault.status(200, body=FILTERED_COMPLETION), "content_filter"),
    ],
    ids=["429", "503", "500", "content-filter-error", "content-filter-finish"],
)
async def test_failures_fall_back_to_openai(az, fake_azure, fault, outcome):
    fake_azure.script(fault)
    response = await az().chat(user("fallback", model="r"))
    assert response.extra_fields.provider == "backup"
    trail = [(a.provider, a.outcome) for a in response.extra_fields.attempts]
    assert trail == [("az", outcome), ("backup", "ok")]


async def test_a_content_filter_error_alone_is_returned_as_such(az, fake_azure):
    fake_azure.script(Fault.status(400, body=CONTENT_FILTER_ERROR))
    with pytest.raises(TurnoutError) as info:
        await az().chat(user(model="az/gpt-4o"))
    assert info.value.code == "content_filter"


async def test_a_partly_filtered_completion_is_passed_on():
    provider = AzureProvider(
        ProviderSettings(name="az", type="azure", base_url="https://x.openai.azure.com")
    )
    assert provider.price_provider == "azure"
    # content plus content_filter: the caller gets what was generated
    partial = FILTERED_COMPLETION | {
        "choices": [FILTERED_COMPLETION["choices"][0] | {"message": {"content": "Partial"}}]
    }
    assert not _all_filtered(ChatResponse.model_validate(partial))
    assert _all_filtered(ChatResponse.model_validate(FILTERED_COMPLETION))


async def test_openai_falls_back_to_azure(make_engine, fake_azure, fake_backup):
    fake_backup.script(Fault.status(429))
    text = f"""
    providers:
      oa: {{type: openai, base_url: "{fake_backup.base_url}", api_key: sk-x}}
      az: {{type: azure, base_url: "{fake_azure.base_url}", api_key: {KEY}}}
    routes:
      - name: r
        match: {{model: r}}
        targets: [oa/gpt-4o]
        fallbacks: [az/gpt-4o]
    """
    built = make_engine(text, plugins=PLUGINS)
    stream = built.stream(user("over to azure", model="r", stream=True))
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert stream.extra_fields.provider == "az"


def test_a_missing_base_url_is_a_policy_problem(make_engine):
    with pytest.raises(PolicyError) as info:
        make_engine(
            "providers:\n  az: {type: azure, api_key: k}\nroutes: [{name: d, match: {model: '*/*'}}]",
            plugins=PLUGINS,
        )
    assert "azure needs base_url" in str(info.value)


def test_an_unknown_auth_option_is_a_policy_problem(make_engine):
    with pytest.raises(PolicyError) as info:
        make_engine(
            "providers:\n  az: {type: azure, base_url: 'https://r.openai.azure.com', api_key: k,"
            " options: {auth: basic}}\nroutes: [{name: d, match: {model: '*/*'}}]",
            plugins=PLUGINS,
        )
    assert "auth" in str(info.value)


async def test_embeddings_go_to_the_deployment_and_fall_back_to_openai(az, fake_azure, fake_backup):
    engine = az()
    answer = await engine.embeddings.create({"model": "az/gpt-4o", "input": ["hi", "there"]})
    sent = fake_azure.requests[-1]
    assert sent.path.startswith("/openai/deployments/gpt-4o/embeddings?")
    assert query(sent.path) == {"api-version": [DEFAULT_API_VERSION]}
    assert sent.headers["api-key"] == KEY
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert answer["extra_fields"]["provider"] == "az"
    fake_azure.script(Fault.status(503))
    rescued = await engine.embeddings.create({"model": "r", "input": "rescue"})
    assert rescued["extra_fields"]["provider"] == "backup"
    assert fake_backup.requests[-1].body["model"] == "gpt-4o-mini"


async def test_v1_embeddings_send_the_deployment_as_model(az, fake_azure):
    await az("{api_version: v1}").embeddings.create({"model": "az/gpt-4o", "input": "x"})
    sent = fake_azure.requests[-1]
    assert sent.path == "/openai/v1/embeddings"
    assert sent.body["model"] == "gpt-4o"
