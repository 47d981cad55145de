"""POST /v1/embeddings over loopback HTTP with the official openai SDK: floats
and base64, token arrays, dimensions, fallbacks after a failing target or one
that offers no embeddings, clear 400s for bad input, the cache, and gateway
keys (401, a cache per key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from turnout.policy.limits import hash_key

from tests.fakes.openai_embeddings import embed
from tests.fakes.openai_upstream import FakeOpenAI, Fault

from .conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
providers:
  mock: {{type: mock}}
  fake: {{type: openai, base_url: "{fake}", api_key: test-key}}
  broken: {{type: mock, options: {{script: [{{fail: server_error}}], repeat: true}}}}
  claude: {{type: anthropic, base_url: "http://127.0.0.1:9", api_key: unused}}
defaults:
  retry: {{attempts: 1, backoff: 1ms}}
routes:
  - name: embed
    match: {{model: embed}}
    targets: [fake/text-embedding-3-small]
  - name: rescued
    match: {{model: embed-rescued}}
    targets: [broken/a]
    fallbacks: [fake/text-embedding-3-small]
  - name: no-embeddings
    match: {{model: embed-elsewhere}}
    targets: [claude/claude-sonnet-4-5]
    fallbacks: [mock/embed]
  - name: guarded
    match: {{model: embed-guarded}}
    targets: [fake/text-embedding-3-small]
    fallbacks: [mock/embed]
  - name: cached
    match: {{model: embed-cached}}
    targets: [fake/text-embedding-3-small]
    cache: {{ttl: 10m}}
  - name: direct
    match: {{model: "*/*"}}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("embeddings") / "routes.yaml"
    path.write_text(POLICY.format(fake=fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return gateway.client()


def _close(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(abs(a - b) < 1e-6 for a, b in zip(got, want, strict=True))


def test_floats_for_a_list_of_strings(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    answer = client.embeddings.create(
        model="embed", input=["hello there", "general"], encoding_format="float"
    )
    assert [item.index for item in answer.data] == [0, 1]
    assert _close(answer.data[0].embedding, embed("hello there", 1536))
    assert _close(answer.data[1].embedding, embed("general", 1536))
    assert answer.usage.prompt_tokens == 3
    sent = fake.requests[-1].body
    assert sent["model"] == "text-embedding-3-small"
    assert sent["input"] == ["hello there", "general"]
    extra = answer.model_extra["extra_fields"]  # type: ignore[index]
    assert extra["request_type"] == "embedding"
    assert extra["route"] == "embed" and extra["provider"] == "fake"
    assert extra["cost"] == pytest.approx(3 * 0.02 / 1e6)


def test_the_sdks_default_base64_is_little_endian_float32(
    client: openai.OpenAI, gateway: RunningGateway
) -> None:
    answer = client.embeddings.create(model="embed", input="hello", dimensions=64)
    assert _close(answer.data[0].embedding, embed("hello", 64))
    raw = httpx.post(
        gateway.url + "/v1/embeddings",
        json={"model": "embed", "input": "hello", "encoding_format": "base64", "dimensions": 8},
    )
    assert raw.status_code == 200
    encoded = raw.json()["data"][0]["embedding"]
    assert isinstance(encoded, str) and len(encoded) == 44  # 8 float32s, base64
    assert raw.headers["x-turnout-route"] == "embed"


def test_token_arrays(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    answer = client.embeddings.create(model="embed", input=[[1, 2, 3], [4, 5]])
    assert len(answer.data) == 2
    assert _close(answer.data[1].embedding, embed([4, 5], 1536))
    assert fake.requests[-1].body["input"] == [[1, 2, 3], [4, 5]]


def test_a_failing_target_falls_back(client: openai.OpenAI, gateway: RunningGateway) -> None:
    raw = client.embeddings.with_raw_response.create(model="embed-rescued", input="rescue me")
    assert raw.headers["x-turnout-attempts"] == "2"
    answer = raw.parse()
    assert _close(answer.data[0].embedding, embed("rescue me", 1536))
    trail = answer.model_extra["extra_fields"]["attempts"]  # type: ignore[index]
    assert [a["outcome"] for a in trail] == ["server_error", "ok"]


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [(Fault.malformed_json(), "server_error"), (Fault.error_body_200(), "server_error"),
     (Fault.status(429), "rate_limited")],
)  # fmt: skip
def test_a_broken_answer_falls_back_too(
    client: openai.OpenAI, fake: FakeOpenAI, fault: Fault, outcome: str
) -> None:
    fake.script(fault)
    answer = client.embeddings.create(model="embed-guarded", input="again")
    trail = answer.model_extra["extra_fields"]["attempts"]  # type: ignore[index]
    assert [a["outcome"] for a in trail] == [outcome, "ok"]
    assert trail[1]["provider"] == "mock"


def test_a_target_without_embeddings_is_passed_over(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="embed-elsewhere", input="anyone?", dimensions=5)
    assert len(answer.data[0].embedding) == 5
    trail = answer.model_extra["extra_fields"]["attempts"]  # type: ignore[index]
    assert trail[0]["provider"] == "claude" and "does not offer embeddings" in trail[0]["message"]
    assert trail[1]["provider"] == "mock" and trail[1]["outcome"] == "ok"


def test_the_mock_embeds_the_same_input_the_same(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="mock/e", input=["a", "b"])
    two = client.embeddings.create(model="mock/e", input=["b"])
    assert len(one.data[0].embedding) == 16
    assert one.data[1].embedding == two.data[0].embedding != one.data[0].embedding


def test_a_repeated_request_is_a_cache_hit(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    first = client.embeddings.with_raw_response.create(
        model="embed-cached", input=["cache me", "twice"], encoding_format="float"
    )
    assert first.headers["x-turnout-cache"] == "MISS"
    calls = len(fake.requests)
    again = client.embeddings.with_raw_response.create(
        model="embed-cached", input=["cache me", "twice"]
    )  # base64 this time: the same vectors, encoded differently
    assert again.headers["x-turnout-cache"] == "HIT"
    assert again.headers["x-turnout-cost"] == "0.000000"
    assert len(fake.requests) == calls  # no upstream call
    assert _close(again.parse().data[1].embedding, first.parse().data[1].embedding)
    other = client.embeddings.with_raw_response.create(
        model="embed-cached", input=["cache me", "twice"], dimensions=32
    )
    assert other.headers["x-turnout-cache"] == "MISS"
    assert len(other.parse().data[0].embedding) == 32
    tokens = client.embeddings.with_raw_response.create(model="embed-cached", input=[[7, 8]])
    assert tokens.headers["x-turnout-cache"] == "MISS"
    again_tokens = client.embeddings.with_raw_response.create(model="embed-cached", input=[7, 8])
    assert again_tokens.headers["x-turnout-cache"] == "HIT"
    assert len(fake.requests) == calls + 2
    fresh = client.embeddings.with_raw_response.create(
        model="embed-cached", input=[7, 8], extra_body={"cache": {"no_cache": True}}
    )
    assert fresh.headers["x-turnout-cache"] == "BYPASS"
    assert len(fake.requests) == calls + 3
    assert "cache" not in fake.requests[-1].body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": ""}, "input"),
        ({"model": "embed", "input": ["a", 1]}, "input"),
        ({"model": "embed", "input": [[1], "a"]}, "input"),
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "embed", "input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a"}, "model"),
        ({"model": "embed", "input": ["a"] * 2049}, "input"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    gateway: RunningGateway, body: dict[str, object], param: str
) -> None:
    answer = httpx.post(gateway.url + "/v1/embeddings", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_the_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="non-empty string"):
        client.embeddings.create(model="embed", input=[])


SALT = "embeddings-test-salt-0123"
KEYS = {"alice": "sk-alice-embed-00000", "bob": "sk-bob-embed-0000000"}


def test_keys_guard_embeddings_and_each_key_has_its_own_cache(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(
        "version: 1\nproviders: {mock: {type: mock}}\nroutes:\n"
        "  - {name: embed, match: {model: embed}, targets: [mock/e], cache: {ttl: 10m}}\n"
        f"keys:\n  salt: {SALT}\n  clients:\n"
        + "".join(f'    {n}: {{hash: "{hash_key(SALT, k)}"}}\n' for n, k in KEYS.items())
    )
    running = start_gateway(policy)
    try:
        url = running.url + "/v1"
        alice, bob, nobody = (
            openai.OpenAI(base_url=url, api_key=key, max_retries=0)
            for key in (KEYS["alice"], KEYS["bob"], "sk-unknown-000000000")
        )
        with pytest.raises(openai.AuthenticationError):
            nobody.embeddings.create(model="embed", input="secret plans")
        first = alice.embeddings.with_raw_response.create(model="embed", input="secret plans")
        again = alice.embeddings.with_raw_response.create(model="embed", input="secret plans")
        other = bob.embeddings.with_raw_response.create(model="embed", input="secret plans")
        assert [r.headers["x-turnout-cache"] for r in (first, again, other)] == [
            "MISS",
            "HIT",
            "MISS",
        ]
    finally:
        running.stop()
