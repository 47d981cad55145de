"""Security: a provider key never leaves the gateway except to its upstream; no
request field can send traffic anywhere but the configured upstreams; gateway
keys are stored hashed and compared in constant time; size limits hold."""

from __future__ import annotations

import inspect
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from turnout.policy.limit_models import KeyEntry
from turnout.policy.limits import KeyRing, hash_key

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.http.conftest import RunningGateway
from tests.http.test_serve import Serve

from .conftest import CANARY, POLICY, closed_port

pytestmark = pytest.mark.timeout(60)

HELLO = [{"role": "user", "content": "hello"}]
LEAKY = {"error": {"message": f"Incorrect API key provided: {CANARY}.", "type": "invalid_request_error", "code": "invalid_api_key", "param": None}}  # fmt: skip


# -- the canary key, through every output channel of a real `turnout serve` ----


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, bad: FakeOpenAI, good: FakeOpenAI
) -> Iterator[Serve]:
    path = tmp_path_factory.mktemp("canary") / "routes.yaml"
    text = POLICY.format(
        bad=bad.base_url, good=good.base_url, canary=CANARY, closed=closed_port(),
        read=0.5, first_token=0.4, total=4,
    )  # fmt: skip
    path.write_text(text.replace("gateway: {", "gateway: {log_content: true, "))
    running = Serve("--config", str(path))
    yield running
    running.stop()


def test_the_canary_key_appears_in_no_output_channel(
    serve: Serve, bad: FakeOpenAI, good: FakeOpenAI
) -> None:
    seen: list[str] = []

    def call(model: str, stream: bool = False, **extra: object) -> None:
        body = {"model": model, "messages": HELLO, "stream": stream, **extra}
        response = httpx.post(serve.url + "/v1/chat/completions", json=body, timeout=10)
        seen.append(str(response.headers) + response.text)

    for model in ("faulty", "alone", "refused", "nodns"):
        for stream in (False, True):
            call(model, stream)  # success, fallbacks, and plain failures
    # upstreams that repeat the key back in their errors (OpenAI's 401 does)
    for fault in (Fault.status(401, body=LEAKY), Fault.status(500, body=LEAKY),
                  Fault.status(200, body=LEAKY), Fault.error_body_200(), Fault.reset()):  # fmt: skip
        for model in ("alone", "faulty"):
            bad.script(fault)
            call(model)
            bad.script(fault)
            call(model, stream=True)
    call("faulty", user=CANARY[:10])  # a prefix is not the key
    for path in ("/v1/models", "/models", "/metrics", "/health", "/ready", "/v1/budgets",
                 "/openapi.json", "/nowhere"):  # fmt: skip
        response = httpx.get(serve.url + path)
        seen.append(str(response.headers) + response.text)
    assert bad.requests and all(
        r.headers["authorization"] == f"Bearer {CANARY}" for r in bad.requests
    )
    serve.stop()
    logs = "".join(serve.lines)
    assert "request" in logs and "faulty" in logs  # the log channel was really captured
    assert CANARY not in logs
    for output in seen:
        assert CANARY not in output
    assert "raw_response" in "".join(seen)  # raw_response was on, and clean


# -- no request field redirects traffic ----------------------------------------


class Trap:
    """A loopback listener that records every connection it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    running = Trap()
    yield running
    running.close()


def test_no_request_field_redirects_traffic(
    gateway: RunningGateway, bad: FakeOpenAI, good: FakeOpenAI, trap: Trap
) -> None:
    evil = f"http://127.0.0.1:{trap.port}"
    attempts: list[dict[str, object]] = [
        {"model": "faulty", "base_url": evil + "/v1"},
        {"model": "faulty", "api_base": evil + "/v1", "api_key": "sk-attacker"},
        {"model": "faulty", "provider": {"type": "openai", "base_url": evil + "/v1"}},
        {"model": "faulty", "extra_body": {"base_url": evil}},
        {"model": "alone", "fallbacks": [evil + "/v1/x", f"127.0.0.1:{trap.port}/x"]},
        {"model": "alone", "fallbacks": ["evil/x", "openai/gpt-4o", "http/127.0.0.1"]},
        {"model": evil + "/x"},
        {"model": f"primary/{evil}/x"},
        {"model": f"http://127.0.0.1:{trap.port}"},
        {"model": "../../primary/gpt-4o"},
        {"model": "faulty", "metadata": {"base_url": evil}},
    ]
    for extra in attempts:
        bad.script(Fault.status(503))  # make fallbacks come into play
        body = {"messages": HELLO, **extra}
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={
                "x-forwarded-host": f"127.0.0.1:{trap.port}",
                "host": f"127.0.0.1:{trap.port}",
            },
            timeout=10,
        )
        assert response.status_code < 500 or response.json()["error"]["code"], response.text
        assert "Traceback" not in response.text
    assert trap.hits == 0
    for fake in (bad, good):
        for recorded in fake.requests:
            assert recorded.path == "/v1/chat/completions"
            assert recorded.headers["host"] == f"127.0.0.1:{fake.port}"
            assert "sk-attacker" not in recorded.headers.get("authorization", "")


# -- gateway keys: hashed at rest, compared in constant time -------------------


def test_gateway_keys_are_stored_hashed_and_compared_in_constant_time() -> None:
    salt = "0123456789abcdef0123"
    secret = "tk-live-" + "x" * 24
    with pytest.raises(ValueError):
        KeyEntry(hash=secret)  # a plaintext key is not a valid entry
    ring = KeyRing(salt, {"app": KeyEntry(hash=hash_key(salt, secret))})
    assert secret not in repr(vars(ring)) + repr(ring._by_digest)
    assert ring.authenticate({"authorization": f"Bearer {secret}"}).name == "app"
    source = inspect.getsource(KeyRing.authenticate)
    # every stored digest is compared with hmac.compare_digest; no dict lookup or
    # early exit whose timing depends on how much of the key matched
    assert "hmac.compare_digest" in source
    assert (
        "break" not in source
        and "_by_digest.get" not in source
        and "in self._by_digest:" not in source
    )


# -- size limits ---------------------------------------------------------------


def test_huge_headers_are_a_clear_431(gateway: RunningGateway, bad: FakeOpenAI) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "faulty", "messages": HELLO},
        headers={f"x-pad-{i}": "a" * 8000 for i in range(10)},
        timeout=10,
    )
    assert response.status_code == 431, response.text
    error = response.json()["error"]
    assert error["code"] == "headers_too_large" and "gateway.max_header_bytes" in error["message"]
    assert bad.requests == []
    assert httpx.get(gateway.url + "/health").status_code == 200


def test_too_many_messages_is_a_clear_400(gateway: RunningGateway, bad: FakeOpenAI) -> None:
    limit = gateway.engine.table.policy.gateway.max_messages
    messages = [{"role": "user", "content": "x"}] * (limit + 1)
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "faulty", "messages": messages}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_messages" and error["param"] == "messages"
    assert "gateway.max_messages" in error["message"]
    assert bad.requests == []


def test_a_body_over_max_body_is_413(gateway: RunningGateway, bad: FakeOpenAI) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "faulty", "messages": [{"role": "user", "content": "x" * 300_000}]},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert bad.requests == []
