"""OpenAI-compatible presets: each type builds from a one-line policy and routes
to the fake OpenAI upstream (``base_url`` overridden) with its vendor's quirks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import turnout.plugins.providers.presets as presets_plugin
from turnout.contract.provider import ProviderSettings
from turnout.contract.registry import DEFAULT_PLUGINS
from turnout.plugins.providers.presets import PRESETS

from tests.conftest import user
from tests.fakes.openai_upstream import FakeOpenAI

KEY = "preset-key-0123456789"
# passed explicitly until the module is a built-in (turnout.contract.registry.DEFAULT_PLUGINS)
PLUGINS = [] if "turnout.plugins.providers.presets" in DEFAULT_PLUGINS else [presets_plugin]
LOCAL = {"ollama", "vllm", "lmstudio"}
NO_STREAM_OPTIONS = {"mistral", "cerebras", "perplexity", "lmstudio"}

DEFAULT_URLS = {
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "xai": "https://api.x.ai/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
def upstream(fake: FakeOpenAI) -> FakeOpenAI:
    fake.reset()
    return fake


def one_line(kind: str, url: str, extra: str = "") -> str:
    return (
        f"providers:\n  p: {{type: {kind}, api_key: {KEY}, base_url: '{url}'{extra}}}\n"
        "routes: [{name: direct, match: {model: '*/*'}}]\n"
    )


def test_every_issue_preset_is_registered():
    assert set(PRESETS) == set(DEFAULT_URLS)


@pytest.mark.parametrize("kind", sorted(PRESETS))
def test_default_base_urls_and_price_tables(kind):
    from genai_prices.data_snapshot import get_snapshot

    cls = PRESETS[kind]
    provider = cls(ProviderSettings(name="p", type=kind))
    assert provider.base_url == DEFAULT_URLS[kind]
    if kind in LOCAL:
        assert cls.free and not cls.requires_api_key
    else:
        assert cls.requires_api_key and not cls.free
        assert cls.price_provider in {p.id for p in get_snapshot().providers}


@pytest.mark.parametrize("kind", sorted(PRESETS))
async def test_a_one_line_policy_routes_to_the_upstream_with_a_bearer_key(
    make_engine, upstream, kind
):
    engine = make_engine(one_line(kind, upstream.base_url), plugins=PLUGINS)
    response = await engine.chat(user(f"hello {kind}", model="p/some-model"))
    assert response.choices[0].message.content == f"echo: hello {kind}"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "some-model"


@pytest.mark.parametrize("kind", ["ollama", "vllm", "mistral", "together"])
async def test_presets_embed_through_the_openai_wire(make_engine, upstream, kind):
    engine = make_engine(one_line(kind, upstream.base_url), plugins=PLUGINS)
    answer = await engine.embeddings.create({"model": "p/nomic-embed-text", "input": ["a", "b"]})
    assert [d["index"] for d in answer["data"]] == [0, 1]
    sent = upstream.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "nomic-embed-text", "input": ["a", "b"], "encoding_format": "float"}
    assert sent.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("kind", sorted(PRESETS))
async def test_streams_ask_for_usage_only_where_the_vendor_takes_stream_options(
    make_engine, upstream, kind
):
    engine = make_engine(one_line(kind, upstream.base_url), plugins=PLUGINS)
    stream = engine.stream(user("stream it", model="p/m", stream=True))
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: stream it"
    sent = upstream.requests[-1].body
    if kind in NO_STREAM_OPTIONS:
        assert "stream_options" not in sent
    else:
        assert sent["stream_options"] == {"include_usage": True}
        assert stream.extra_fields.billed_usage.completion_tokens > 0


async def test_stream_usage_can_be_turned_back_on(make_engine, upstream):
    text = one_line("cerebras", upstream.base_url, ", options: {stream_usage: true}")
    engine = make_engine(text, plugins=PLUGINS)
    _ = [c async for c in engine.stream(user(model="p/m", stream=True))]
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", sorted(LOCAL))
async def test_local_servers_need_no_key_and_cost_nothing(make_engine, upstream, kind):
    text = (
        f"providers:\n  p: {{type: {kind}, base_url: '{upstream.base_url}'}}\n"
        "routes: [{name: direct, match: {model: '*/*'}}]\n"
    )
    engine = make_engine(text, plugins=PLUGINS)
    response = await engine.chat(user(model="p/llama3.1"))
    assert "authorization" not in upstream.requests[-1].headers
    assert response.extra_fields.cost == 0


async def test_cloud_presets_without_a_key_are_disabled(make_engine):
    text = (
        "providers:\n  p: {type: groq}\n  m: {type: mock}\n"
        "routes: [{name: r, match: {model: r}, targets: [p/llama], fallbacks: [m/echo]}]\n"
    )
    engine = make_engine(text, plugins=PLUGINS)
    response = await engine.chat(user(model="r"))
    assert response.extra_fields.provider == "m"


async def test_mistral_quirks(make_engine, upstream):
    engine = make_engine(one_line("mistral", upstream.base_url), plugins=PLUGINS)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await engine.chat(
        user(
            "call_tool now",
            model="p/mistral-large-latest",
            tools=tools,
            tool_choice="required",
            seed=7,
            max_completion_tokens=50,
            user="end-user-1",
        )
    )
    sent = upstream.requests[-1].body
    assert sent["tool_choice"] == "any"
    assert sent["random_seed"] == 7 and "seed" not in sent
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent
    assert "user" not in sent

    stream = engine.stream(user(model="p/m", stream=True, stream_options={"include_usage": True}))
    _ = [c async for c in stream]
    assert "stream_options" not in upstream.requests[-1].body


async def test_mistral_keeps_other_tool_choices(make_engine, upstream):
    engine = make_engine(one_line("mistral", upstream.base_url), plugins=PLUGINS)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    choice = {"type": "function", "function": {"name": "f"}}
    await engine.chat(user(model="p/m", tools=tools, tool_choice=choice))
    assert upstream.requests[-1].body["tool_choice"] == choice


async def test_openrouter_attribution_headers(make_engine, upstream):
    options = ", options: {http_referer: 'https://example.com', x_title: Example}"
    engine = make_engine(one_line("openrouter", upstream.base_url, options), plugins=PLUGINS)
    await engine.chat(user(model="p/anthropic/claude-sonnet-4.5"))
    sent = upstream.requests[-1]
    assert sent.headers["http-referer"] == "https://example.com"
    assert sent.headers["x-title"] == "Example"
    assert sent.body["model"] == "anthropic/claude-sonnet-4.5"


async def test_openrouter_without_attribution_sends_none(make_engine, upstream):
    engine = make_engine(one_line("openrouter", upstream.base_url), plugins=PLUGINS)
    await engine.chat(user(model="p/openai/gpt-4o"))
    assert "http-referer" not in upstream.requests[-1].headers
    assert "x-title" not in upstream.requests[-1].headers


async def test_a_preset_priced_by_its_vendor_table(make_engine, upstream):
    engine = make_engine(one_line("deepseek", upstream.base_url), plugins=PLUGINS)
    response = await engine.chat(user(model="p/deepseek-chat"))
    assert response.extra_fields.cost is not None and response.extra_fields.cost > 0
