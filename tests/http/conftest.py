"""A real gateway on loopback: uvicorn in a thread, the fake OpenAI upstream behind it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from turnout import Engine
from turnout.http import Gateway, PolicyReloader
from turnout.http.protocol import CoalescingHttpToolsProtocol

from tests.fakes.openai_upstream import FakeOpenAI

POLICY = """\
version: 1
gateway: {{max_body: 64KiB}}
providers:
  mock: {{type: mock}}
  fake: {{type: openai, base_url: "{fake}", api_key: test-key}}
  slow: {{type: mock, options: {{chunk_delay: 50ms, reply: "{slow_reply}"}}}}
  overloaded: {{type: mock, options: {{script: [{{fail: overloaded}}], repeat: true}}}}
  limited: {{type: mock, options: {{script: [{{fail: rate_limited}}], repeat: true}}}}
  broken: {{type: mock, options: {{script: [{{fail: server_error}}], repeat: true}}}}
  stuck: {{type: mock, options: {{script: [{{fail: timeout}}], repeat: true}}}}
  midway:
    type: mock
    options: {{script: [{{fail: server_error, fail_after_chunks: 2}}], repeat: true}}
defaults:
  retry: {{attempts: 1, backoff: 1ms}}
routes:
  - name: smart
    match: {{model: smart}}
    targets: [mock/echo]
  - name: upstream
    match: {{model: upstream}}
    targets: [fake/gpt-4o]
  - name: overloaded
    match: {{model: overloaded}}
    targets: [overloaded/a]
    fallbacks: [overloaded/b]
  - name: limited
    match: {{model: limited}}
    targets: [limited/a]
  - name: broken
    match: {{model: broken}}
    targets: [broken/a]
  - name: stuck
    match: {{model: stuck}}
    targets: [stuck/a]
  - name: rescued
    match: {{model: rescued}}
    targets: [broken/a]
    fallbacks: [mock/rescuer]
  - name: misnamed
    match: {{model: misnamed}}
    targets: [fake/gpt-nope]
    fallbacks: [mock/rescuer]
  - name: midway
    match: {{model: midway}}
    targets: [midway/a]
  - name: slow
    match: {{model: slow}}
    targets: [slow/a]
"""

SLOW_REPLY = " ".join(f"w{i}" for i in range(100))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningGateway:
    """A started gateway: its base URL, engine and helpers for tests."""

    def __init__(self, app: Gateway, policy: Path) -> None:
        self.app = app
        self.engine = app.engine
        self.policy = policy
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            loop="uvloop",
            http=CoalescingHttpToolsProtocol,
            lifespan="on",
            access_log=False,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one sample of /metrics (0 if absent)."""
        text = httpx.get(self.url + "/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)


def start_gateway(
    policy: Path, *, watch: float | None = None, plugins: tuple[object, ...] = (), **kwargs: object
) -> RunningGateway:
    engine = Engine.from_file(policy, autoload=False, plugins=plugins)
    reloader = PolicyReloader(engine, policy, interval=watch, sighup=False)
    return RunningGateway(Gateway(engine, reloader, **kwargs), policy).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture(scope="session")
def policy_text(fake: FakeOpenAI) -> str:
    return POLICY.format(fake=fake.base_url, slow_reply=SLOW_REPLY)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, policy_text: str) -> Iterator[RunningGateway]:
    path = tmp_path_factory.mktemp("gateway") / "routes.yaml"
    path.write_text(policy_text)
    running = start_gateway(path, body_timeout=0.5)
    yield running
    running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return gateway.client()


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeOpenAI) -> None:
    fake.reset()
