"""Relayed streams through the gateway: an OpenAI-compatible upstream's events passed
on as bytes when nothing on the route needs parsed chunks, the parsed path when a
cache or an output guardrail does; the official openai SDK reads both alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, Fault

from .conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
providers:
  fake: {{type: openai, base_url: "{fake}", api_key: test-key}}
  mock: {{type: mock}}
models:
  fake/gpt-4o: {{input_per_mtok: 10, output_per_mtok: 10}}
budgets:
  - {{name: everything, scope: gateway, limit: 100}}
routes:
  - {{name: relayed, match: {{model: relayed}}, targets: [fake/gpt-4o]}}
  - {{name: cached, match: {{model: cached}}, targets: [fake/gpt-4o], cache: {{ttl: 10m}}}}
  - name: guarded
    match: {{model: guarded}}
    targets: [fake/gpt-4o]
    guardrails: [{{type: pii, on: output}}]
  - {{name: rescued, match: {{model: rescued}}, targets: [fake/gpt-4o], fallbacks: [mock/echo]}}
"""
SAID = [{"role": "user", "content": "relay these words please"}]
UPSTREAM_ORDER = b'"service_tier":"default","system_fingerprint":"fp_fake","choices":'
"""How the fake upstream orders a chunk's fields; the parsed path writes its own order."""


@pytest.fixture
def gateway(tmp_path: Path, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY.format(fake=fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


def events(gateway: RunningGateway, **body: Any) -> list[bytes]:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"messages": SAID, "stream": True, **body},
        timeout=10,
    )
    assert response.status_code == 200
    return [event for event in response.content.split(b"\n\n") if event]


def chunks(raw: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(event.removeprefix(b"data: ")) for event in raw if event != b"data: [DONE]"]


def text(raw: list[bytes]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks(raw) if c["choices"]
    )


def test_a_route_without_chunk_hooks_relays_the_upstreams_bytes(gateway: RunningGateway) -> None:
    relayed = events(gateway, model="relayed")
    assert relayed[-1] == b"data: [DONE]"
    assert any(UPSTREAM_ORDER in event for event in relayed[1:-2])  # byte for byte
    for route in ("cached", "guarded"):  # these hooks need chunks: parsed and written again
        parsed = events(gateway, model=route)
        assert not any(UPSTREAM_ORDER in event for event in parsed)
        assert text(parsed) == text(relayed)


@pytest.mark.parametrize("model", ["relayed", "cached"])
def test_the_sdk_reads_a_relayed_stream_as_a_parsed_one(gateway: RunningGateway, model) -> None:
    client = gateway.client()
    stream = client.chat.completions.create(model=model, messages=SAID, stream=True)  # type: ignore[arg-type]
    got = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == (
        "echo: relay these words please"
    )
    assert got[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in got)  # asked upstream for cost; not by the caller
    extra = got[-1].model_extra["extra_fields"]  # type: ignore[index]
    assert extra["provider"] == "fake" and extra["billed_usage"]["completion_tokens"] > 0


def test_include_usage_ends_with_usage_extra_fields_and_settles_the_budget(
    gateway: RunningGateway,
) -> None:
    raw = events(gateway, model="relayed", stream_options={"include_usage": True})
    last = chunks(raw)[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    extra = last["extra_fields"]
    assert extra["route"] == "relayed" and extra["cost"] > 0
    assert extra["billed_usage"]["prompt_tokens"] == last["usage"]["prompt_tokens"]
    assert sum("extra_fields" in c for c in chunks(raw)) == 1
    spent = httpx.get(gateway.url + "/v1/budgets").json()["data"][0]["spent"]
    assert spent == pytest.approx(extra["cost"])


def test_a_failure_before_the_first_event_falls_back(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.error_body_200())
    raw = events(gateway, model="rescued")
    assert raw[-1] == b"data: [DONE]"
    extra = chunks(raw)[-1]["extra_fields"]
    assert [(a["provider"], a["outcome"]) for a in extra["attempts"]] == [
        ("fake", "server_error"),
        ("mock", "ok"),
    ]
    assert text(raw).startswith("relay these words")  # the mock echoes, relayed as chunks


def test_a_stream_cut_mid_way_ends_with_an_error_event(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.truncated_stream())
    raw = events(gateway, model="relayed")
    assert raw[-1].startswith(b"event: error\n")
    assert b"[DONE]" not in b"".join(raw)
    error = json.loads(raw[-1].split(b"data: ", 1)[1])["error"]
    assert error["code"] == "stream_interrupted"
    with pytest.raises(openai.APIError):
        fake.script(Fault.truncated_stream())
        list(gateway.client().chat.completions.create(model="relayed", messages=SAID, stream=True))  # type: ignore[arg-type]
