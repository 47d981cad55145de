"""/v1/models, /health, /ready, /metrics, and cancelling the upstream on disconnect."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from .conftest import RunningGateway, start_gateway

HELLO = [{"role": "user", "content": "count me"}]


def test_models_lists_route_aliases_and_provider_models(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert models["smart"].owned_by == "turnout"
    assert models["upstream"].owned_by == "turnout"
    assert models["fake/gpt-4o"].owned_by == "fake"
    assert "mock/rescuer" in models


def test_health_and_ready(gateway: RunningGateway) -> None:
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/ready")
    assert ready.status_code == 200
    assert "mock" in ready.json()["providers_enabled"]


def test_not_ready_without_an_enabled_provider(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(
        "version: 1\nproviders:\n  openai: {type: openai, api_key: '${NO_SUCH_KEY_FOR_TESTS}'}\n"
    )
    gateway = start_gateway(policy)
    try:
        ready = httpx.get(gateway.url + "/ready")
        health = httpx.get(gateway.url + "/health")
    finally:
        gateway.stop()
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert health.status_code == 200


def test_metrics_parse_and_counters_move(gateway: RunningGateway, client: openai.OpenAI) -> None:
    labels = {"route": "rescued", "provider": "mock", "model": "rescuer", "status": "200"}
    before = gateway.metric("turnout_requests_total", **labels)
    fallbacks = gateway.metric("turnout_fallbacks_total", route="rescued")
    failed = gateway.metric(
        "turnout_attempts_total", provider="broken", model="a", outcome="server_error"
    )
    tokens = gateway.metric(
        "turnout_tokens_total", provider="mock", model="rescuer", direction="output"
    )
    responses = gateway.metric(
        "turnout_http_responses_total", endpoint="/v1/chat/completions", status="200"
    )
    for _ in range(3):
        client.chat.completions.create(model="rescued", messages=HELLO)
    assert gateway.metric("turnout_requests_total", **labels) == before + 3
    assert gateway.metric("turnout_fallbacks_total", route="rescued") == fallbacks + 3
    assert (
        gateway.metric(
            "turnout_attempts_total", provider="broken", model="a", outcome="server_error"
        )
        == failed + 3
    )
    assert (
        gateway.metric("turnout_tokens_total", provider="mock", model="rescuer", direction="output")
        == tokens + 6
    )
    assert (
        gateway.metric(
            "turnout_http_responses_total", endpoint="/v1/chat/completions", status="200"
        )
        == responses + 3
    )


def test_metrics_exposition_has_every_family(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "turnout_requests",
        "turnout_request_duration_seconds",
        "turnout_upstream_duration_seconds",
        "turnout_time_to_first_token_seconds",
        "turnout_gateway_overhead_seconds",
        "turnout_tokens",
        "turnout_cost_usd",
        "turnout_retries",
        "turnout_fallbacks",
        "turnout_attempts",
        "turnout_requests_in_flight",
        "turnout_policy_reloads",
        "turnout_http_responses",
    } <= names


def test_rejected_requests_are_counted(gateway: RunningGateway) -> None:
    labels = {"endpoint": "/v1/chat/completions", "status": "404"}
    before = gateway.metric("turnout_http_responses_total", **labels)
    httpx.post(gateway.url + "/v1/chat/completions", json={"model": "nope", "messages": HELLO})
    assert gateway.metric("turnout_http_responses_total", **labels) == before + 1


def test_client_disconnect_cancels_the_stream(gateway: RunningGateway) -> None:
    labels = {"route": "slow", "provider": "slow", "model": "a", "status": "499"}
    before = gateway.metric("turnout_requests_total", **labels)
    body = {"model": "slow", "stream": True, "messages": HELLO}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    # the slow mock would need ~5 s to finish; the gateway gives up on it at once
    gateway.wait_for(
        lambda: gateway.metric("turnout_requests_total", **labels) == before + 1,
        "the stream to be recorded as cancelled",
    )
    gateway.wait_for(
        lambda: gateway.metric("turnout_requests_in_flight") == 0, "no request in flight"
    )
