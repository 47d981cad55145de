"""A gateway key's limits bind on every path, over a real gateway on loopback
(docs/security.md points here): a request's ``fallbacks`` get no model the key
could not ask for itself, a bad key is a 401 before the body is read, and
``user`` budgets count against the key, not a name the body chose."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from turnout import Engine, PolicyError
from turnout.errors import TurnoutError
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
  - name: cached
    match: {{model: cached}}
    targets: [mock/echo]
    cache: {{ttl: 1h}}
  - name: direct
    match: {{model: "*/*"}}
keys:
  salt: {SALT}
  clients:
    models: {{hash: "{hash_key(SALT, KEYS["models"])}", models: [smart, cached, "fake/*"]}}
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
    (skip,) = response.json()["extra_fields"]["skipped"]  # the caller is told why
    assert skip["target"] == "mock/echo" and skip["reason"] == "not_allowed"


def test_a_streamed_answer_says_which_request_fallbacks_the_key_could_not_use(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    body = hello(fallbacks=["mock/echo"], stream=True, stream_options={"include_usage": True})
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body,
        headers={"authorization": f"Bearer {KEYS['models']}"}, timeout=30,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: {")]
    fields = json.loads(events[-1])["extra_fields"]
    assert [s["reason"] for s in fields["skipped"]] == ["not_allowed"]


def test_an_answer_with_nothing_skipped_carries_no_skipped_field(gateway: RunningGateway) -> None:
    response = post(gateway, hello(), "models")
    assert response.status_code == 200
    assert "skipped" not in response.json()["extra_fields"]


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


# -- authentication comes before the body ---------------------------------------------


@pytest.mark.parametrize("who", [None, "tk-nobody"])
@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/chat/completions", "/v1/responses", "/v1/completions"]
)
def test_a_bad_key_with_an_invalid_body_is_a_401_not_a_400(
    gateway: RunningGateway, who: str | None, path: str
) -> None:
    headers = {"content-type": "application/json"}
    if who is not None:
        headers["authorization"] = f"Bearer {who}"
    response = httpx.post(gateway.url + path, content=b"{not json", headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == (
        "missing_api_key" if who is None else "invalid_api_key"
    )


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_bad_key_on_the_messages_api_is_a_401_before_the_body(
    gateway: RunningGateway, path: str
) -> None:
    headers = {"x-api-key": "tk-nobody", "anthropic-version": "2023-06-01"}
    response = httpx.post(gateway.url + path, content=b"{not json", headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"


def test_a_bad_key_with_a_body_over_the_limit_is_a_401_not_a_413(gateway: RunningGateway) -> None:
    body = b"x" * (gateway.engine.table.policy.gateway.max_body + 1)
    response = post(gateway, body, "tk-nobody")
    assert response.status_code == 401, response.text


def test_a_bad_key_is_answered_before_its_body_arrives(gateway: RunningGateway) -> None:
    """The client declares 1 MB and sends 10 bytes: the 401 comes at once, not after the
    gateway's body timeout (a gateway waiting for the body would answer 408)."""
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        "authorization: Bearer tk-nobody\r\ncontent-type: application/json\r\n"
        "content-length: 1000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"model":')
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_good_key_with_an_invalid_body_is_still_a_400(gateway: RunningGateway) -> None:
    response = post(gateway, b"{not json", "open")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_the_library_checks_the_key_before_it_parses_the_body(gateway: RunningGateway) -> None:
    engine = gateway.engine
    assert engine is not None
    with pytest.raises(TurnoutError) as info:
        asyncio.run(engine.chat(b"{not json", headers={"x-api-key": "tk-nobody"}))
    assert info.value.status_code == 401


# -- the response cache is per key -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_cached_answer_is_served_to_its_key_only_through_the_sdk(
    gateway: RunningGateway, stream: bool
) -> None:
    def ask(who: str) -> str:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS[who], max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="cached",
            messages=[{"role": "user", "content": f"private, stream={stream}"}],
            temperature=0,
            stream=stream,
        )
        answer = raw.parse()
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        else:
            assert answer.choices[0].message.content
        return raw.headers["x-turnout-cache"].lower()

    assert ask("models") == "miss"
    assert ask("models") == "hit"
    assert ask("open") == "miss"  # another key never reads the first key's answer
    assert ask("open") == "hit"


# -- user budgets count against the key ------------------------------------------------

USERS_SALT = "salt-for-the-user-budgets"
USER_KEYS = {"plain": "tk-plain-0001", "app": "tk-app-0002", "app2": "tk-app2-0003"}
USERS_POLICY = f"""\
version: 1
providers:
  mock: {{type: mock}}
routes:
  - name: chat
    match: {{model: chat}}
    targets: [mock/echo]
budgets:
  - {{scope: user, unit: requests, limit: 2, window: day}}
keys:
  salt: {USERS_SALT}
  clients:
    plain: {{hash: "{hash_key(USERS_SALT, USER_KEYS["plain"])}"}}
    app: {{hash: "{hash_key(USERS_SALT, USER_KEYS["app"])}", end_users: true}}
    app2: {{hash: "{hash_key(USERS_SALT, USER_KEYS["app2"])}", end_users: true}}
"""


@pytest.fixture
def users(tmp_path: Path) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(USERS_POLICY)
    running = start_gateway(path)
    yield running
    running.stop()


def ask_as(gateway: RunningGateway, who: str, user: str | None = None) -> int:
    body = hello("chat") | ({"user": user} if user is not None else {})
    headers = {"authorization": f"Bearer {USER_KEYS[who]}"}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers)
    if response.status_code == 429:
        assert response.json()["error"]["code"] == "budget_exceeded"
    return response.status_code


def test_a_key_without_end_users_is_one_user_whatever_the_body_says(
    users: RunningGateway,
) -> None:
    assert ask_as(users, "plain", "u1") == 200
    assert ask_as(users, "plain") == 200  # omitting user does not escape the budget
    assert ask_as(users, "plain", "somebody-else") == 429  # nor does naming another
    assert ask_as(users, "app", "u1") == 200  # another key's users are not charged


def test_a_key_with_end_users_counts_each_of_its_users_and_only_its_own(
    users: RunningGateway,
) -> None:
    assert [ask_as(users, "app", "u1") for _ in range(3)] == [200, 200, 429]
    assert ask_as(users, "app", "u2") == 200  # its users are counted apart
    assert ask_as(users, "app2", "u1") == 200  # the same name under another key is not app's
    assert ask_as(users, "app2", "app/u1") == 200  # nor is a name built to look like it
    assert [ask_as(users, "app") for _ in range(3)] == [200, 200, 429]  # no user: the key's


def test_budgets_show_a_key_its_own_user_counter(users: RunningGateway) -> None:
    assert ask_as(users, "plain", "u1") == 200
    headers = {"authorization": f"Bearer {USER_KEYS['plain']}"}
    rows = httpx.get(users.url + "/v1/budgets", headers=headers).json()["data"]
    [row] = [r for r in rows if r["scope"] == "user"]
    assert row["match"] == "plain" and row["spent"] == 1


def test_a_key_name_with_a_slash_is_refused_once_a_key_passes_end_users(tmp_path: Path) -> None:
    text = USERS_POLICY.replace("    plain: {", "    team/plain: {")
    with pytest.raises(PolicyError, match="team/plain"):
        Engine.from_yaml(text, autoload=False)


def test_a_callers_request_id_is_scoped_to_its_key(gateway: RunningGateway) -> None:
    """With keys on, ``x-request-id: X`` comes back (and is logged) as ``<key>:X``,
    so one tenant cannot write entries under another's ids; an unknown key's id
    is not taken at all."""
    body = {"model": "cached", "messages": [{"role": "user", "content": "hi"}]}
    for who, path in (("open", "/v1/chat/completions"), ("models", "/v1/messages")):
        sent = {**body, "max_tokens": 5} if path == "/v1/messages" else body
        answer = httpx.post(gateway.url + path, json=sent, headers={
            "authorization": f"Bearer {KEYS[who]}", "x-request-id": "trace-42"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == f"{who}:trace-42"
    forged = httpx.post(gateway.url + "/v1/chat/completions", json=body,
                        headers={"authorization": "Bearer tk-nobody", "x-request-id": "open:trace-42"})  # fmt: skip
    assert forged.status_code == 401
    assert "trace-42" not in forged.headers["x-request-id"]


def exposure_gateway(tmp_path: Path, public: bool = False) -> RunningGateway:
    policy = tmp_path / "routes.yaml"
    policy.write_text(
        f"version: 1\ngateway: {{public_metrics: {str(public).lower()}}}\n"
        "providers: {mock: {type: mock}}\nroutes:\n"
        "  - {name: smart, match: {model: smart}, targets: [mock/echo]}\n"
        "  - {name: secret-project, match: {model: secret-project}, targets: [mock/hidden]}\n"
        f"keys:\n  salt: {SALT}\n  clients:\n"
        f'    tenant: {{hash: "{hash_key(SALT, "tk-tenant-0001")}", routes: [smart], budget: {{limit: 5}}}}\n'
        f'    ops: {{hash: "{hash_key(SALT, "tk-ops-000002")}", admin: true}}\n'
    )
    return start_gateway(policy)


def test_metrics_models_and_ready_say_nothing_of_other_tenants_without_a_key(
    tmp_path: Path,
) -> None:
    running = exposure_gateway(tmp_path)
    tenant = {"authorization": "Bearer tk-tenant-0001"}
    ops = {"authorization": "Bearer tk-ops-000002"}
    try:
        url = running.url
        assert httpx.get(url + "/metrics").status_code == 401
        assert httpx.get(url + "/metrics", headers=tenant).status_code == 403
        scraped = httpx.get(url + "/metrics", headers=ops)
        assert scraped.status_code == 200 and "turnout_" in scraped.text
        assert httpx.get(url + "/v1/models").status_code == 401
        listed = {m["id"] for m in httpx.get(url + "/v1/models", headers=tenant).json()["data"]}
        assert listed == {"smart", "mock/echo"}  # not the route it may not use, nor its target
        everything = {m["id"] for m in httpx.get(url + "/v1/models", headers=ops).json()["data"]}
        assert "secret-project" in everything
        assert httpx.get(url + "/v1/models/secret-project", headers=tenant).status_code == 404
        assert httpx.get(url + "/v1/models/smart", headers=tenant).status_code == 200
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    finally:
        running.stop()


def test_public_metrics_is_the_operators_choice(tmp_path: Path) -> None:
    running = exposure_gateway(tmp_path, public=True)
    try:
        assert httpx.get(running.url + "/metrics").status_code == 200
    finally:
        running.stop()
