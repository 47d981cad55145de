"""Fuzzing POST /v1/chat/completions of a served gateway: arbitrary JSON, wrong
types, huge strings, deep nesting and invalid UTF-8 never get a 5xx; every error
is JSON in the documented shape; the server stays up. Then /openapi.json is
checked against the live gateway with schemathesis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.http.conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
gateway: {max_body: 256KiB, max_messages: 64}
providers:
  mock: {type: mock}
routes:
  - name: everything
    match: {model: "*"}
    targets: [mock/echo]
"""
URL = "/v1/chat/completions"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "routes.yaml"
    path.write_text(POLICY)
    running = start_gateway(path, body_timeout=2.0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(served: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        yield client


def assert_well_formed(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code == 200:
        return
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) >= {"error", "status_code", "extra_fields"}, body
    assert body["status_code"] == response.status_code
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]


def post(http: httpx.Client, content: bytes) -> httpx.Response:
    response = http.post(URL, content=content, headers={"content-type": "application/json"})
    assert_well_formed(response)
    return response


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
FIELDS = st.sampled_from(
    ["model", "messages", "stream", "temperature", "top_p", "n", "max_tokens", "stop", "tools",
     "tool_choice", "stream_options", "fallbacks", "metadata", "response_format", "logit_bias",
     "seed", "user", "logprobs", "top_logprobs"]
)  # fmt: skip
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard"]) | JSON},
    optional={"content": st.text(max_size=50) | JSON, "name": JSON, "tool_calls": JSON},
)
REQUEST = st.fixed_dictionaries(
    {"model": st.sampled_from(["smart", "mock/x", "", "*"]) | JSON,
     "messages": st.lists(MESSAGE, max_size=4) | JSON},
    optional={"stream": st.booleans() | JSON},
).flatmap(lambda base: st.dictionaries(FIELDS, JSON, max_size=4).map(lambda extra: {**base, **extra}))  # fmt: skip


@FUZZ
@given(JSON)
def test_arbitrary_json(http: httpx.Client, value: object) -> None:
    post(http, json.dumps(value).encode())


@FUZZ
@given(REQUEST)
def test_requests_with_wrong_types(http: httpx.Client, body: dict[str, object]) -> None:
    post(http, json.dumps(body).encode())


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(http: httpx.Client, content: bytes) -> None:
    post(http, content)


@FUZZ
@given(REQUEST, st.integers(0, 10_000), st.binary(min_size=1, max_size=4))
def test_invalid_utf8_inside_valid_json(
    http: httpx.Client, body: dict[str, object], at: int, junk: bytes
) -> None:
    raw = json.dumps(body).encode()
    at = at % (len(raw) + 1)
    post(http, raw[:at] + b"\xff" + junk + raw[at:])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 300_000), st.sampled_from(["content", "model", "user", "key"]))
def test_huge_strings(http: httpx.Client, size: int, where: str) -> None:
    text = "é" * size
    body: dict[str, object] = {"model": "smart", "messages": [{"role": "user", "content": "x"}]}
    if where == "content":
        body["messages"] = [{"role": "user", "content": text}]
    elif where == "key":
        body[text[:100_000]] = 1
    else:
        body[where] = text
    post(http, json.dumps(body, ensure_ascii=False).encode())


@pytest.mark.parametrize("depth", [10, 100, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("where", ["top", "content", "metadata", "tools"])
def test_deep_nesting(http: httpx.Client, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    if where == "top":
        raw = nested
    elif where == "content":
        raw = f'{{"model": "smart", "messages": [{{"role": "user", "content": {nested}}}]}}'
    elif where == "metadata":
        deep = '{"a":' * depth + "1" + "}" * depth
        raw = f'{{"model": "smart", "messages": [{{"role": "user", "content": "x"}}], "metadata": {deep}}}'
    else:
        raw = f'{{"model": "smart", "messages": [{{"role": "user", "content": "x"}}], "tools": [{nested}]}}'
    post(http, raw.encode())


def test_the_server_is_still_up_after_the_fuzzing(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    ok = http.post(URL, json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "hi"


# -- the OpenAPI description, checked against the live gateway ----------------


def test_openapi_json_is_served(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {URL, "/v1/models", "/health", "/ready", "/metrics"}


def test_the_live_gateway_conforms_to_its_openapi_description(served: RunningGateway) -> None:
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    checks = [not_a_server_error, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for operation in operations:
        for mode in modes if operation.path == URL else modes[:1]:
            examples = 60 if operation.path == URL else 3

            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=served.url, checks=checks, timeout=10)

            run()
    assert httpx.get(served.url + "/health").status_code == 200
