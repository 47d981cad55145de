"""A streaming client that stops reading cannot hold an upstream connection or a
budget hold forever: past ``gateway.send_timeout`` its connection is closed, the
upstream call cancelled and the hold released, so other callers of the same
provider are served. Over ``turnout serve`` (its guarded protocol) on loopback,
against the fake OpenAI upstream (docs/security.md points here)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.http.test_serve import Serve

POLICY = """\
version: 1
gateway: {{send_timeout: 500ms}}
providers:
  fake: {{type: openai, base_url: "{url}", api_key: sk-test, max_connections: 2}}
models:
  fake/gpt-4o: {{input_per_mtok: 1, output_per_mtok: 1}}
routes:
  - name: r
    match: {{model: r}}
    targets: [fake/gpt-4o]
    timeout: {{total: 3s}}
    budget: {{limit: 1000, window: day}}
"""

STREAM = json.dumps(
    {
        "model": "r",
        "stream": True,
        "max_tokens": 120000,
        "messages": [{"role": "user", "content": "go"}],
    }
).encode()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply_words=40_000, record=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Iterator[Serve]:
    policy = tmp_path_factory.mktemp("stalled") / "routes.yaml"
    policy.write_text(POLICY.format(url=upstream.base_url))
    running = Serve("--config", str(policy), "--no-watch")
    yield running
    running.stop()


def _stalled_stream(serve: Serve) -> socket.socket:
    """A streamed request whose client reads the head and then nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", serve.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(STREAM)).encode() + b"\r\n\r\n" + STREAM
    )
    assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
    return sock


def _closed_by_gateway(sock: socket.socket, within: float) -> bool:
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return True
    except (ConnectionResetError, TimeoutError):
        return True
    return False


def _reserved(serve: Serve) -> float:
    rows = httpx.get(serve.url + "/v1/budgets").json()["data"]
    return sum(row["reserved"] for row in rows)


def test_clients_that_stop_reading_free_the_pool_and_their_holds(serve: Serve) -> None:
    stalled = [_stalled_stream(serve) for _ in range(2)]  # both of the provider's connections
    try:
        time.sleep(0.3)
        assert _reserved(serve) > 0  # held while they stream
        deadline = time.monotonic() + 15
        while _reserved(serve) > 0:  # released once send_timeout cuts them off
            assert time.monotonic() < deadline, "holds of stalled clients never released"
            time.sleep(0.1)
        answer = httpx.post(
            serve.url + "/v1/chat/completions",
            json={"model": "r", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text  # the pool was freed: not a 504
        for sock in stalled:
            assert _closed_by_gateway(sock, within=10)
    finally:
        for sock in stalled:
            sock.close()
    assert any("client stopped reading" in line for line in serve.lines)
