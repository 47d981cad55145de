"""Shared pieces of the reliability suite: a served gateway in front of two fake
OpenAI upstreams (one misbehaving, one healthy) and a way to read /metrics."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.http.conftest import RunningGateway, start_gateway

CANARY = "sk-canary-7f3a9c1e5b2d4680aa11"
"""The primary provider's API key: it must never leave the gateway except to its upstream."""

READ_TIMEOUT = 0.5
FIRST_TOKEN = 0.4
TOTAL = 4.0

POLICY = """\
version: 1
gateway: {{max_body: 256KiB}}
providers:
  primary:
    type: openai
    base_url: "{bad}"
    api_key: {canary}
    raw_response: true
    timeout: {{connect: 1s, read: {read}s}}
  backup: {{type: openai, base_url: "{good}", api_key: sk-backup, raw_response: true}}
  refused:
    type: openai
    base_url: "http://127.0.0.1:{closed}/v1"
    api_key: {canary}
    timeout: {{connect: 1s, read: {read}s}}
  nodns:
    type: openai
    base_url: "http://upstream.invalid/v1"
    api_key: {canary}
    timeout: {{connect: 1s, read: {read}s}}
  mock: {{type: mock}}
defaults:
  retry: {{attempts: 1, backoff: 1ms}}
  timeout: {{total: {total}s, first_token: {first_token}s}}
routes:
  - name: faulty
    match: {{model: faulty}}
    targets: [primary/gpt-4o]
    fallbacks: [backup/gpt-4o-mini]
  - name: alone
    match: {{model: alone}}
    targets: [primary/gpt-4o]
  - name: patient
    match: {{model: patient}}
    targets: [primary/gpt-4o]
    fallbacks: [backup/gpt-4o-mini]
    retry: {{attempts: 2, backoff: 1ms, max_backoff: 2s}}
  - name: refused
    match: {{model: refused}}
    targets: [refused/gpt-4o]
    fallbacks: [backup/gpt-4o-mini]
  - name: nodns
    match: {{model: nodns}}
    targets: [nodns/gpt-4o]
    fallbacks: [backup/gpt-4o-mini]
  - name: echo
    match: {{model: echo}}
    targets: [mock/echo]
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def bad() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def good() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def policy_text(bad: FakeOpenAI, good: FakeOpenAI) -> str:
    return POLICY.format(
        bad=bad.base_url,
        good=good.base_url,
        canary=CANARY,
        closed=closed_port(),
        read=READ_TIMEOUT,
        first_token=FIRST_TOKEN,
        total=TOTAL,
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, policy_text: str) -> Iterator[RunningGateway]:
    path: Path = tmp_path_factory.mktemp("reliability") / "routes.yaml"
    path.write_text(policy_text)
    running = start_gateway(path, body_timeout=2.0)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(request: pytest.FixtureRequest) -> None:
    for name in ("bad", "good"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
