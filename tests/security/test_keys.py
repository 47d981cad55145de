"""A gateway key's limits bind on every path, over a real gateway on loopback
(docs/security.md points here): a request's ``fallbacks`` get no model the key
could not ask for itself, a bad key is a 401 before the body is read, and
``user`` budgets count against the key, not a name the body chose."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from turnout.policy.limits import hash_key

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.http.conftest import RunningGateway, start_gateway

SALT = "salt-for-the-key-tests"
KEYS = {
    "models": "tk-models-0001",  # models: [smart, "fake/*"]
    "routes": "tk-routes-0002",  # routes: [smart]
    "open": "tk-open-0003",  # no restriction
}

POLICY = f"""\
version: 1
providers:
  mock: {{type: mock}}
  fake: {{type: openai, base_url: "{{fake}}", api_key: test-key}}
defaults:
  retry: {{attempts: 1}}
routes:
  - name: smart
    match: {{model: smart}}
    targets: [fake/gpt-4o]
  - name: direct
    match: {{model: "*/*"}}
keys:
  salt: {SALT}
  clients:
    models: {{hash: "{hash_key(SALT, KEYS["models"])}", models: [smart, "fake/*"]}}
    routes: {{hash: "{hash_key(SALT, KEYS["routes"])}", routes: [smart]}}
    open: {{hash: "{hash_key(SALT, KEYS["open"])}"}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("keys") / "routes.yaml"
    path.write_text(POLICY.replace("{fake}", fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI) -> None:
    fake.reset()


def post(gateway: RunningGateway, body: dict | bytes, who: str | None = "open") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if who is not None:
        headers["authorization"] = f"Bearer {KEYS.get(who, who)}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        gateway.url + "/v1/chat/completions", content=content, headers=headers, timeout=30
    )


def hello(model: str = "smart", **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


# -- request fallbacks ---------------------------------------------------------------


def test_a_request_fallback_outside_the_keys_models_is_skipped_and_an_allowed_one_serves(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(500))  # the route's own target fails
    response = post(gateway, hello(fallbacks=["mock/echo", "fake/gpt-4o-mini"]), "models")
    assert response.status_code == 200, response.text
    assert response.headers["x-turnout-provider"] == "fake"
    assert response.headers["x-turnout-model"] == "gpt-4o-mini"
    assert response.headers["x-turnout-attempts"] == "2"  # mock/echo was never called
    assert [r.body["model"] for r in fake.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_a_key_limited_to_routes_gets_no_fallback_another_route_would_serve(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(500))
    response = post(gateway, hello(fallbacks=["mock/echo", "fake/gpt-4o-mini"]), "routes")
    assert response.status_code == 502, response.text
    fields = response.json()["extra_fields"]
    assert len(fields["attempts"]) == 1 and len(fake.requests) == 1
    skipped = {s["target"]: s for s in fields["skipped"]}
    assert set(skipped) == {"mock/echo", "fake/gpt-4o-mini"}
    assert all(s["reason"] == "not_allowed" for s in skipped.values())
    assert "route 'direct'" in skipped["mock/echo"]["detail"]


def test_a_key_without_limits_keeps_its_request_fallbacks(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(500))
    response = post(gateway, hello(fallbacks=["mock/echo"]), "open")
    assert response.status_code == 200, response.text
    assert response.headers["x-turnout-provider"] == "mock"


def test_the_primary_model_outside_the_keys_models_is_still_a_403(gateway: RunningGateway) -> None:
    response = post(gateway, hello("mock/echo"), "models")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
