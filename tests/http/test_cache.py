"""The response cache through the gateway: X-Turnout-Cache, and Redis shared by processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.redis_server import redis_server

from .conftest import RunningGateway, start_gateway
from .test_serve import Serve

POLICY = """\
version: 1
providers:
  fake: {{type: openai, base_url: "{fake}", api_key: test-key}}
defaults:
  cache: {{ttl: 10m{extra}}}
routes:
  - {{name: cached, match: {{model: cached}}, targets: [fake/gpt-4o]}}
"""
BODY = {
    "model": "cached",
    "temperature": 0,
    "messages": [{"role": "user", "content": "cache me through the gateway"}],
}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def cached(tmp_path: Path, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY.format(fake=fake.base_url, extra=""))
    running = start_gateway(path)
    yield running
    running.stop()


def chat_calls(fake: FakeOpenAI) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def test_two_identical_requests_reach_the_upstream_once(cached, fake) -> None:
    first = httpx.post(cached.url + "/v1/chat/completions", json=BODY)
    second = httpx.post(cached.url + "/v1/chat/completions", json=BODY)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-turnout-cache"] == "MISS"
    assert second.headers["x-turnout-cache"] == "HIT"
    assert chat_calls(fake) == 1
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["extra_fields"]["cache"] == "hit"
    assert second.json()["extra_fields"]["cost"] == 0
    assert cached.metric("turnout_cache_lookups_total", route="cached", result="hit") == 1


def test_a_cached_answer_replays_as_a_well_formed_stream(cached, fake) -> None:
    httpx.post(cached.url + "/v1/chat/completions", json=BODY)
    with httpx.stream(
        "POST", cached.url + "/v1/chat/completions", json={**BODY, "stream": True}
    ) as response:
        assert response.headers["x-turnout-cache"] == "HIT"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: cache me through the gateway"
    assert chat_calls(fake) == 1


def test_a_streamed_answer_is_stored_once_complete(cached, fake) -> None:
    for expected in ("MISS", "HIT"):
        with httpx.stream(
            "POST", cached.url + "/v1/chat/completions", json={**BODY, "stream": True}
        ) as response:
            assert response.headers["x-turnout-cache"] == expected
            assert list(response.iter_lines())[-2:] == ["data: [DONE]", ""]
    assert chat_calls(fake) == 1


def test_no_cache_bypasses_and_sampling_is_not_cached(cached, fake) -> None:
    url = cached.url + "/v1/chat/completions"
    bypass = httpx.post(url, json=BODY, headers={"cache-control": "no-cache"})
    assert bypass.headers["x-turnout-cache"] == "BYPASS"
    sampled = httpx.post(url, json={**BODY, "temperature": 0.9})
    assert sampled.headers["x-turnout-cache"] == "BYPASS"
    assert chat_calls(fake) == 2


def test_a_second_gateway_process_hits_what_the_first_stored_in_redis(
    tmp_path: Path, fake: FakeOpenAI, redis_url: str
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        POLICY.format(fake=fake.base_url, extra=f", backend: redis, url: '{redis_url}'")
    )
    one = Serve("--config", str(path), "--no-watch")
    two = Serve("--config", str(path), "--no-watch")
    try:
        body = {**BODY, "messages": [{"role": "user", "content": "shared by two processes"}]}
        first = httpx.post(one.url + "/v1/chat/completions", json=body)
        second = httpx.post(two.url + "/v1/chat/completions", json=body)
        assert first.headers["x-turnout-cache"] == "MISS"
        assert second.headers["x-turnout-cache"] == "HIT"
        assert second.json()["choices"][0]["message"]["content"] == (
            "echo: shared by two processes"
        )
        assert chat_calls(fake) == 1
    finally:
        one.stop()
        two.stop()
