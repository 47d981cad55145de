"""Budgets, rate limits and API keys through the gateway, with the official openai
SDK: 401/403 as AuthenticationError/PermissionDeniedError, 429 with Retry-After,
the cost header and GET /v1/budgets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from turnout.policy.limits import hash_key

from .conftest import RunningGateway, start_gateway

SALT = "test-salt-0123456789"
KEYS = {"alice": "tk-alice-secret", "bob": "tk-bob-secret", "carol": "tk-carol-secret"}

POLICY = f"""\
version: 1
providers:
  mock: {{type: mock, options: {{usage: {{prompt_tokens: 8, completion_tokens: 2}}}}}}
models:
  mock/paid: {{input_per_mtok: 1000, output_per_mtok: 1000}}
budgets:
  - {{name: everything, scope: gateway, limit: 100}}
  - {{name: research, scope: team, match: research, limit: 50}}
routes:
  - name: paid
    match: {{model: paid}}
    targets: [mock/paid]
    budget: {{limit: 0.033, window: day}}  # three holds of $0.011 (9 + 2 tokens)
  - name: other
    match: {{model: other}}
    targets: [mock/paid]
keys:
  salt: {SALT}
  clients:
    alice: {{hash: "{hash_key(SALT, KEYS["alice"])}", routes: [paid], team: research}}
    bob: {{hash: "{hash_key(SALT, KEYS["bob"])}", models: [other], budget: {{limit: 0.011}}}}
    carol: {{hash: "{hash_key(SALT, KEYS["carol"])}", rate_limit: {{rpm: 1}}}}
"""

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY)
    running = start_gateway(path)
    yield running
    running.stop()


def client(gateway: RunningGateway, name: str | None) -> openai.OpenAI:
    key = KEYS[name] if name else "tk-nobody"
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def test_missing_or_unknown_key_is_401_in_the_openai_shape(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "paid", "messages": HI}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, None).chat.completions.create(model="paid", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(gateway, None).chat.completions.create(
            model="paid",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=2,
            stream=True,
        )


def test_a_key_outside_its_routes_or_models_is_403(gateway: RunningGateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, "alice").chat.completions.create(model="other", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert "alice" in caught.value.message and "other" in caught.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, "bob").chat.completions.create(model="paid", messages=HI, max_tokens=2)  # type: ignore[arg-type]


def test_cost_header_then_429_with_retry_after_when_the_budget_is_spent(
    gateway: RunningGateway,
) -> None:
    alice = client(gateway, "alice")
    for _ in range(3):
        raw = alice.chat.completions.with_raw_response.create(
            model="paid",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=2,
        )
        assert raw.headers["x-turnout-cost"] == "0.010000"
    with pytest.raises(openai.RateLimitError) as caught:
        alice.chat.completions.create(model="paid", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    error = caught.value
    assert error.code == "budget_exceeded"
    assert "route paid budget ($0.033 per day)" in error.message
    retry_after = int(error.response.headers["retry-after"])
    assert 1 <= retry_after <= 86400


def test_per_key_budget_and_rate_limit(gateway: RunningGateway) -> None:
    bob = client(gateway, "bob")
    bob.chat.completions.create(model="other", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        bob.chat.completions.create(model="other", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert "key bob" in caught.value.message
    carol = client(gateway, "carol")
    carol.chat.completions.create(model="other", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        carol.chat.completions.create(model="other", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    # someone else's key is not limited by them
    client(gateway, "alice").chat.completions.create(model="paid", messages=HI, max_tokens=2)  # type: ignore[arg-type]


def budgets(gateway: RunningGateway, name: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {KEYS[name]}"} if name else {}
    return httpx.get(gateway.url + "/v1/budgets", headers=headers)


def test_budgets_endpoint_needs_a_key_and_shows_the_callers_budgets(
    gateway: RunningGateway,
) -> None:
    assert budgets(gateway, None).status_code == 401
    client(gateway, "alice").chat.completions.create(model="paid", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    response = budgets(gateway, "alice")
    assert response.status_code == 200
    rows = {(r["scope"], r["match"]): r for r in response.json()["data"]}
    paid = rows[("route", "paid")]
    assert paid["spent"] == pytest.approx(0.01)
    assert paid["remaining"] == pytest.approx(0.023)
    assert paid["limit"] == pytest.approx(0.033)
    assert paid["reserved"] == 0
    assert paid["resets_in"] >= 1 and paid["resets_at"] > 0
    assert rows[("gateway", "*")]["spent"] == pytest.approx(0.01)
    assert rows[("team", "research")]["spent"] == pytest.approx(0.01)
    assert ("key", "bob") not in rows  # another caller's budget
    assert ("route", "other") not in rows  # a route alice may not use
    bob_rows = {(r["scope"], r["match"]) for r in budgets(gateway, "bob").json()["data"]}
    assert ("key", "bob") in bob_rows and ("team", "research") not in bob_rows
