"""Security promises of guardrails and the cache, over a real gateway on loopback
(docs/security.md points here): what a caller sends cannot hide a secret from the
input guardrails, cannot cost unbounded work, is not logged once blocked, and one
key never reads another's cached answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from turnout.policy.limits import hash_key

from tests.fakes.openai_upstream import FakeOpenAI
from tests.http.conftest import RunningGateway, start_gateway

SALT = "pepper-for-the-tests"
KEYS = {"alice": "tk-alice-0001", "bob": "tk-bob-0002"}
SECRET = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2

POLICY = f"""\
version: 1
gateway: {{log_content: true}}
providers:
  mock: {{type: mock}}
  evil: {{type: mock, options: {{reply: '{{"a": "{"a" * 40}!"}}'}}}}
  fake: {{type: openai, base_url: "{{fake}}", api_key: test-key}}
routes:
  - name: guarded
    match: {{model: guarded}}
    targets: [fake/gpt-4o]
    guardrails: [secrets, json_schema]
  - name: schema
    match: {{model: schema}}
    targets: [evil/json]
    guardrails: [{{type: json_schema, action: block}}]
  - name: cached
    match: {{model: cached}}
    targets: [mock/echo]
    cache: {{ttl: 1h}}
  - name: shared
    match: {{model: shared}}
    targets: [mock/echo]
    cache: {{ttl: 1h, per_caller: false}}
keys:
  salt: {SALT}
  clients:
    alice: {{hash: "{hash_key(SALT, KEYS["alice"])}"}}
    bob: {{hash: "{hash_key(SALT, KEYS["bob"])}"}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("tenants") / "routes.yaml"
    path.write_text(POLICY.replace("{fake}", fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


def post(
    gateway: RunningGateway, body: dict | str, who: str = "alice", header: str = "authorization"
) -> httpx.Response:
    value = f"Bearer {KEYS[who]}" if header == "authorization" else KEYS[who]
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        content=content,
        headers={header: value, "content-type": "application/json"},
        timeout=30,
    )


def hello(model: str = "guarded", **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


# -- secrets ride in no pass-through field -------------------------------------------

CARRIERS = {
    "prediction": hello(prediction={"type": "content", "content": f"draft {SECRET}"}),
    "message name": {"model": "guarded", "messages": [{"role": "user", "content": "hi", "name": SECRET}]},
    "tool arguments as an object": {"model": "guarded", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"token": SECRET}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]},
    "image_url": {"model": "guarded", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"https://example.com/a.png?key={SECRET}"}},
    ]}]},
    "metadata": hello(metadata={"note": SECRET}),
    "an unknown field": hello(vendor_extension={"deep": [{"x": SECRET}]}),
}  # fmt: skip
PATHS = {
    "prediction": "prediction.content",
    "message name": "messages[0].name",
    "tool arguments as an object": "messages[1].tool_calls[0].function.arguments.token",
    "image_url": "messages[0].content[1].image_url.url",
    "metadata": "metadata.note",
    "an unknown field": "vendor_extension.deep[0].x",
}


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_a_secret_in_a_pass_through_field_is_blocked_before_any_upstream_call(
    gateway: RunningGateway, fake: FakeOpenAI, carrier: str
) -> None:
    fake.reset()
    response = post(gateway, CARRIERS[carrier])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "guardrail_blocked" and "OPENAI_API_KEY" in error["message"]
    assert error["param"] == PATHS[carrier] and SECRET not in response.text
    assert fake.requests == []


def test_clean_pass_through_fields_still_reach_the_upstream(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.reset()
    response = post(gateway, hello(metadata={"note": "fine"}, vendor_extension={"deep": [1, "x"]}))
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1


# -- guardrails cost bounded work ------------------------------------------------------


def test_text_that_made_the_patterns_backtrack_is_scanned_and_passes(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    fake.reset()
    body = {
        "model": "guarded",
        "messages": [{"role": "user", "content": "aws key" + " " * 20_000 + "!"}],
    }
    assert post(gateway, body).status_code == 200
    assert gateway.engine is not None and httpx.get(gateway.url + "/health").status_code == 200


def _schema_request(schema: object) -> dict:
    return hello(
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    )


DOUBLING = {
    "$ref": "#/$defs/d0",
    "$defs": {
        **{f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(40)},
        "d40": {"type": "string"},
    },
}
SCHEMAS = {
    "doubling $ref chain": (DOUBLING, "expand to more than"),
    "lookaround pattern": (
        {"type": "string", "pattern": "(?<=a)b"},
        "not a schema this gateway runs",
    ),
    "remote $ref": ({"$ref": "http://127.0.0.1:9/schema.json"}, "not a schema this gateway runs"),
    "oversized": ({"enum": ["x" * 70_000]}, "bytes of JSON"),
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_schema_that_costs_unbounded_work_is_a_400_naming_the_field(
    gateway: RunningGateway, fake: FakeOpenAI, name: str
) -> None:
    fake.reset()
    schema, why = SCHEMAS[name]
    response = post(gateway, _schema_request(schema))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "response_format.json_schema.schema" and why in error["message"]
    assert fake.requests == []


def test_a_backtracking_pattern_in_a_schema_is_run_in_linear_time(gateway: RunningGateway) -> None:
    # 40 a's and a "!" against ^(a+)+$: 2**40 steps for a backtracking engine
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}
    body = _schema_request(schema) | {"model": "schema"}
    response = post(gateway, body)
    assert response.status_code == 400, response.text
    assert "does not match" in response.json()["error"]["message"]


# -- blocked content is not logged -----------------------------------------------------


def test_a_blocked_request_is_not_logged_even_with_log_content(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="turnout.request"):
        response = post(
            gateway,
            {"model": "guarded", "messages": [{"role": "user", "content": f"my key {SECRET}"}]},
        )
        assert response.status_code == 400
        gateway.wait_for(
            lambda: any("guardrail" in str(r.msg) for r in caplog.records), "the request log line"
        )
    lines = [str(r.msg) for r in caplog.records if r.name == "turnout.request"]
    assert lines and all(SECRET not in line for line in lines)
    assert any("withheld" in line for line in lines)


def test_an_allowed_request_is_still_logged_with_its_content(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="turnout.request"):
        assert (
            post(
                gateway,
                hello("cached", temperature=0, messages=[{"role": "user", "content": "log me"}]),
            ).status_code
            == 200
        )
        gateway.wait_for(
            lambda: any("log me" in str(r.msg) for r in caplog.records), "the request log line"
        )


# -- the cache is per key ----------------------------------------------------------------


def _cache_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-turnout-cache"].lower()


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_one_key_never_reads_another_keys_cached_answer(
    gateway: RunningGateway, header: str
) -> None:
    body = hello(
        "cached",
        temperature=0,
        messages=[{"role": "user", "content": f"private to alice via {header}"}],
    )
    assert _cache_of(post(gateway, body, "alice", header)) == "miss"
    assert _cache_of(post(gateway, body, "alice", header)) == "hit"
    assert _cache_of(post(gateway, body, "bob", header)) == "miss"


def test_a_cache_the_policy_shares_explicitly_is_shared(gateway: RunningGateway) -> None:
    body = hello("shared", temperature=0, messages=[{"role": "user", "content": "public"}])
    assert _cache_of(post(gateway, body, "alice")) == "miss"
    assert _cache_of(post(gateway, body, "bob", "x-api-key")) == "hit"


def test_an_infinite_number_on_a_cached_route_is_a_400(gateway: RunningGateway) -> None:
    raw = '{"model": "cached", "temperature": 0, "messages": [{"role": "user", "content": "x"}], "vendor": {"w": 1e999}}'
    response = post(gateway, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "vendor.w"


def test_a_big_input_is_scanned_off_the_event_loop_with_the_same_verdict(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    from turnout.plugins.guardrails.plugin import OFF_LOOP

    fake.reset()
    text = "lorem ipsum " * (OFF_LOOP // 12 + 10)
    blocked = post(gateway, {"model": "guarded", "messages": [{"role": "user", "content": text + SECRET}]})
    assert blocked.status_code == 400 and blocked.json()["error"]["param"] == "messages[0].content"
    assert post(gateway, {"model": "guarded", "messages": [{"role": "user", "content": text}]}).status_code == 200
    assert len(fake.requests) == 1
