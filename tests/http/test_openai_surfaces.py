"""Legacy completions, models/{id}, the upstream's Retry-After, and stored
responses shared by two gateway replicas on one real redis-server, isolated
per API key — over loopback HTTP with the official openai SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from turnout.policy.limits import hash_key

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.redis_server import redis_server

from .conftest import RunningGateway, start_gateway


def test_a_legacy_completion_is_answered_as_a_chat_turn(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    completion = client.completions.create(model="upstream", prompt="Say hi", max_tokens=20)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "echo: Say hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert fake.requests[-1].body["messages"] == [{"role": "user", "content": "Say hi"}]
    assert completion.model_extra["extra_fields"]["request_type"] == "text.completion"  # type: ignore[index]


def test_a_streamed_legacy_completion_with_echo(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model="upstream", prompt="Go", echo=True, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "Goecho: Go"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_what_a_chat_turn_cannot_say_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="one prompt") as info:
        client.completions.create(model="smart", prompt=["a", "b"])
    assert info.value.body["param"] == "prompt"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client.completions.create(model="smart", prompt="a", suffix="b")


def test_models_retrieve_an_alias_a_provider_model_and_an_unknown(client: openai.OpenAI) -> None:
    alias = client.models.retrieve("smart")
    assert alias.id == "smart" and alias.owned_by == "turnout"
    target = client.models.retrieve("fake/gpt-4o")  # the SDK sends the slash as %2F
    assert target.id == "fake/gpt-4o" and target.owned_by == "fake"
    with pytest.raises(openai.NotFoundError, match="GET /v1/models lists them"):
        client.models.retrieve("nothing-like-it")


def test_the_slash_arrives_encoded_or_plain(gateway: RunningGateway) -> None:
    for path in ("/v1/models/fake%2Fgpt-4o", "/v1/models/fake/gpt-4o"):
        assert httpx.get(gateway.url + path).json()["id"] == "fake/gpt-4o"


def test_the_upstreams_retry_after_reaches_the_caller(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(429, retry_after=7))
    body = {"model": "upstream", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    fake.script(Fault.status(503, retry_after=3))
    answer = httpx.post(gateway.url + "/v1/responses", json={"model": "upstream", "input": "hi"})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "3"


SALT = "responses-test-salt-0123"
KEYS = {"alice": "sk-alice-0000000000", "bob": "sk-bob-00000000000"}
SHARED = f"""\
version: 1
state: {{backend: redis, url: "URL", prefix: "PREFIX"}}
providers:
  mock: {{type: mock}}
routes:
  - name: smart
    match: {{model: smart}}
    targets: [mock/echo]
keys:
  salt: {SALT}
  clients:
    alice: {{hash: "{hash_key(SALT, KEYS["alice"])}"}}
    bob: {{hash: "{hash_key(SALT, KEYS["bob"])}"}}
"""


def test_previous_response_id_across_two_replicas_on_redis_per_key(tmp_path: Path) -> None:
    with redis_server() as url:
        policy = tmp_path / "routes.yaml"
        policy.write_text(SHARED.replace("URL", url).replace("PREFIX", f"t{id(tmp_path)}:"))
        replicas = [start_gateway(policy), start_gateway(policy)]
        try:
            alice = [
                openai.OpenAI(base_url=r.url + "/v1", api_key=KEYS["alice"], max_retries=0)
                for r in replicas
            ]
            bob = openai.OpenAI(
                base_url=replicas[1].url + "/v1", api_key=KEYS["bob"], max_retries=0
            )
            first = alice[0].responses.create(model="smart", input="my name is Ada")
            second = alice[1].responses.create(
                model="smart", input="what is my name?", previous_response_id=first.id
            )
            assert second.previous_response_id == first.id
            history = alice[1].responses.input_items.list(second.id, order="asc")
            assert [i.content[0].text for i in history.data] == ["what is my name?"]  # type: ignore[union-attr]
            assert alice[1].responses.retrieve(first.id).output_text == "my name is Ada"
            with pytest.raises(openai.NotFoundError):
                bob.responses.retrieve(first.id)
            with pytest.raises(openai.BadRequestError):
                bob.responses.create(model="smart", input="hi", previous_response_id=first.id)
            with pytest.raises(openai.NotFoundError):
                bob.responses.delete(first.id)
            alice[1].responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                alice[0].responses.retrieve(first.id)
        finally:
            for replica in replicas:
                replica.stop()


def test_state_alone_puts_stored_responses_in_redis(tmp_path: Path) -> None:
    """No budgets, limits or keys: ``state: {backend: redis}`` still shares them."""
    policy_text = SHARED.split("keys:")[0]
    with redis_server() as url:
        policy = tmp_path / "routes.yaml"
        policy.write_text(policy_text.replace("URL", url).replace("PREFIX", "solo:"))
        replicas = [start_gateway(policy), start_gateway(policy)]
        try:
            clients = [r.client() for r in replicas]
            first = clients[0].responses.create(model="smart", input="kept in redis")
            again = clients[1].responses.create(
                model="smart", input="next", previous_response_id=first.id
            )
            assert again.output_text == "next"
            assert clients[1].responses.retrieve(first.id).output_text == "kept in redis"
        finally:
            for replica in replicas:
                replica.stop()
