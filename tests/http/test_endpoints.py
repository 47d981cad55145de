"""/v1/models, /health, /ready, /metrics, and cancelling the upstream on disconnect."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from turnout import Engine, hookimpl
from turnout.http import Gateway

from tests.fakes.openai_upstream import FakeOpenAI, Fault

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


HOLD = 5.0  # seconds the fake upstream holds a reply


def test_client_disconnect_cancels_a_plain_completion(
    gateway: RunningGateway, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.request")
    # the call cut short is on the trail as cancelled, so the provider is named
    labels = {"route": "upstream", "provider": "fake", "model": "gpt-4o", "status": "499"}
    before = gateway.metric("turnout_requests_total", **labels)
    answered = {"endpoint": "/v1/chat/completions", "status": "499"}
    before_http = gateway.metric("turnout_http_responses_total", **answered)
    fake.script(Fault.delay(HOLD))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection on a timeout
        httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "upstream", "messages": HELLO},
            headers={"x-request-id": "leaves-early"},
            timeout=httpx.Timeout(5, read=0.3),
        )
    gateway.wait_for(lambda: fake.abandoned == 1, "the upstream request to be dropped", HOLD)
    assert time.monotonic() - started < HOLD / 3
    gateway.wait_for(
        lambda: gateway.metric("turnout_requests_total", **labels) == before + 1,
        "the request to be recorded as cancelled",
    )
    assert gateway.metric("turnout_http_responses_total", **answered) == before_http + 1
    assert gateway.metric("turnout_requests_in_flight") == 0
    logged = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("request_id") == "leaves-early"
    ]
    assert len(logged) == 1
    assert logged[0]["status"] == "cancelled" and logged[0]["status_code"] == 499
    assert logged[0]["attempts"] == ["fake/gpt-4o:cancelled"]


def _watchers() -> list[asyncio.Task[object]]:
    return [
        t
        for t in gc.get_objects()
        if isinstance(t, asyncio.Task)
        and not t.done()
        and getattr(t.get_coro(), "__qualname__", "") == "_cancel_when_gone"
    ]


def test_plain_completions_leave_no_watcher_behind(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        for i in range(200):
            reply = client.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": f"n{i}"}]
            )
            assert reply.choices[0].message.content == f"n{i}"
    gateway.wait_for(lambda: not _watchers(), "every disconnect watcher to finish", 2)
    assert gateway.metric("turnout_requests_in_flight") == 0


def test_a_plain_completion_in_flight_has_no_watcher_task(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    """A client that leaves is seen by the connection (its ``connection_lost``
    cancels the request), so no task per request waits for ``http.disconnect``."""
    fake.script(Fault.delay(0.5))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(
            httpx.post,
            gateway.url + "/v1/chat/completions",
            json={"model": "upstream", "messages": HELLO},
            timeout=10,
        )
        gateway.wait_for(
            lambda: gateway.metric("turnout_requests_in_flight") == 1, "the request in flight", 2
        )
        assert not _watchers()
        assert reply.result().status_code == 200


def test_observers_that_await_after_the_answer_are_not_cancelled(tmp_path: Path) -> None:
    """The answer is written before the request_finished observers run; the end of
    the response (which uvicorn reports as a disconnect) must not cancel them."""
    seen: list[tuple[str, int]] = []

    class SlowObserver:
        @hookimpl
        async def turnout_request_finished(self, outcome):
            await asyncio.sleep(0.05)  # e.g. writing to a remote log sink
            seen.append((outcome.status, outcome.status_code))

    policy = tmp_path / "routes.yaml"
    policy.write_text(
        "providers: {mock: {type: mock}}\n"
        "routes: [{name: r, match: {model: r}, targets: [mock/echo]}]\n"
    )
    running = start_gateway(policy, plugins=(SlowObserver(),))
    labels = {"endpoint": "/v1/chat/completions", "status": "499"}
    cancelled = running.metric("turnout_http_responses_total", **labels)  # process-wide
    try:
        with running.client() as client:
            for i in range(3):
                client.chat.completions.create(model="r", messages=HELLO)
                running.wait_for(lambda i=i: len(seen) == i + 1, "the observer to finish", 2)
            for i in range(3, 5):  # a stream's end must not cancel them either
                list(client.chat.completions.create(model="r", messages=HELLO, stream=True))
                running.wait_for(lambda i=i: len(seen) == i + 1, "the observer to finish", 2)
        assert seen == [("ok", 200)] * 5
        assert running.metric("turnout_http_responses_total", **labels) == cancelled
    finally:
        running.stop()


async def _interrupted(
    policy: Path, fake: FakeOpenAI, *, client_leaves: bool, shutdown: bool
) -> bool:
    """Call the app directly, as a server would, and interrupt it while the upstream
    holds the reply; True if the CancelledError reached the server."""
    app = Gateway(Engine.from_file(policy, autoload=False))
    gone = asyncio.Event()
    body = json.dumps({"model": "upstream", "messages": HELLO}).encode()
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        if pending:
            return pending.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    sent: list[object] = []

    async def send(message: object) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    fake.reset()
    fake.script(Fault.delay(HOLD))
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    try:
        while not fake.requests:
            await asyncio.sleep(0.01)
        if client_leaves:
            gone.set()
        if shutdown:
            task.cancel()
        async with asyncio.timeout(HOLD / 2):
            await asyncio.wait([task])
        assert sent == []  # nobody to answer either way
        return task.cancelled()
    finally:
        await app.engine.aclose()


async def test_only_a_server_shutdown_propagates_the_cancellation(
    tmp_path: Path, policy_text: str, fake: FakeOpenAI
) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(policy_text)
    assert not await _interrupted(policy, fake, client_leaves=True, shutdown=False)
    assert await _interrupted(policy, fake, client_leaves=False, shutdown=True)
    assert await _interrupted(policy, fake, client_leaves=True, shutdown=True)
