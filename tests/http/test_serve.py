"""`turnout serve` as a user runs it: a real process, signals, several workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from turnout.lines import FLUSH_INTERVAL

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[2]

SLOW_POLICY = """\
version: 1
providers:
  mock: {type: mock}
  slow: {type: mock, options: {latency: 1s}}
"""


class Serve:
    def __init__(self, *args: str, cwd: Path = ROOT) -> None:
        self.port = free_port()
        env = {**os.environ, "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
        env.pop("OPENAI_API_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "turnout.cli", "serve", "--port", str(self.port),
             "--log-format", "json", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("turnout serve did not start:\n" + "".join(self.lines))
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.url + "/metrics").text
        return sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def stop(self) -> bool:
        """SIGTERM; True if the process shut down cleanly (uvicorn re-raises the
        signal after its graceful shutdown, so -SIGTERM is a clean exit too)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30) in (0, -signal.SIGTERM)


@pytest.fixture
def default_serve() -> Iterator[Serve]:
    serve = Serve()  # the README's command: default routes.yaml, no API keys
    yield serve
    serve.stop()


def test_the_readme_curl_example_works_on_the_default_policy(default_serve: Serve) -> None:
    response = httpx.post(
        default_serve.url + "/v1/chat/completions",
        json={"model": "smart", "messages": [{"role": "user", "content": "Hello, turnout"}]},
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello, turnout"
    assert response.headers["x-turnout-provider"] == "mock"
    assert httpx.get(default_serve.url + "/ready").status_code == 200
    deadline = time.monotonic() + 5  # the request log is written within FLUSH_INTERVAL
    while not (logged := [e for e in default_serve.events() if e.get("event") == "request"]):
        assert time.monotonic() < deadline, "no request log line"
        time.sleep(0.05)
    assert logged[-1]["route"] == "smart" and logged[-1]["status_code"] == 200
    assert "Hello, turnout" not in "".join(default_serve.lines)


def _chat(client: httpx.Client, url: str, request_id: str) -> None:
    response = client.post(
        url + "/v1/chat/completions",
        json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": request_id},
    )
    assert response.status_code == 200


def _logged_ids(serve: Serve) -> list[object]:
    return [e["request_id"] for e in serve.events() if e.get("event") == "request"]


def test_no_request_log_line_is_lost_at_a_clean_shutdown(default_serve: Serve) -> None:
    with httpx.Client() as client:
        for i in range(40):
            _chat(client, default_serve.url, f"shutdown-{i}")
    assert default_serve.stop()  # well within FLUSH_INTERVAL of the last request
    default_serve.reader.join(10)
    logged = [i for i in _logged_ids(default_serve) if str(i).startswith("shutdown-")]
    assert sorted(logged) == sorted(f"shutdown-{i}" for i in range(40))


def test_a_killed_gateway_keeps_the_lines_older_than_the_flush_interval(
    default_serve: Serve,
) -> None:
    with httpx.Client() as client:
        _chat(client, default_serve.url, "before-the-crash")
    time.sleep(FLUSH_INTERVAL + 1)  # docs/deploy.md: a crash loses at most the last interval
    default_serve.proc.kill()
    default_serve.proc.wait(10)
    default_serve.reader.join(10)
    assert "before-the-crash" in _logged_ids(default_serve)


def test_sighup_reloads_the_policy(default_serve: Serve) -> None:
    default_serve.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while default_serve.metric("turnout_policy_reloads_total", result="ok") < 1:
        assert time.monotonic() < deadline, "no reload after SIGHUP"
        time.sleep(0.05)
    assert default_serve.proc.poll() is None


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(SLOW_POLICY)
    serve = Serve("--config", str(policy))
    result: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: result.append(
            httpx.post(
                serve.url + "/v1/chat/completions",
                json={"model": "slow/a", "messages": [{"role": "user", "content": "drained"}]},
                timeout=30,
            )
        )
    )
    request.start()
    deadline = time.monotonic() + 10
    while serve.metric("turnout_requests_in_flight") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert serve.stop()
    request.join(30)
    assert result and result[0].status_code == 200
    assert result[0].json()["choices"][0]["message"]["content"] == "drained"


def test_workers_share_one_metrics_view(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(SLOW_POLICY)
    serve = Serve("--config", str(policy), "--workers", "2")
    try:
        with httpx.Client() as client:
            for _ in range(20):
                response = client.post(
                    serve.url + "/v1/chat/completions",
                    json={"model": "mock/a", "messages": [{"role": "user", "content": "x"}]},
                    headers={"connection": "close"},
                )
                assert response.status_code == 200
        total = serve.metric(
            "turnout_requests_total", route="direct", provider="mock", model="a", status="200"
        )
        assert total == 20
    finally:
        assert serve.stop()
    serve.reader.join(10)
    # both workers' buffered request lines, whole, none lost at shutdown
    assert all(json.loads(line) for line in serve.lines if line.startswith("{"))
    assert len([e for e in serve.events() if e.get("event") == "request"]) == 20


def _post_in_background(url: str, result: list[httpx.Response]) -> threading.Thread:
    body = {"model": "slow/a", "messages": [{"role": "user", "content": "drained"}]}
    thread = threading.Thread(
        target=lambda: result.append(
            httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        )
    )
    thread.start()
    return thread


def _wait_in_flight(serve: Serve) -> None:
    deadline = time.monotonic() + 10
    while serve.metric("turnout_requests_in_flight") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_ready_answers_503_while_draining(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(SLOW_POLICY.replace("1s", "2s"))
    serve = Serve("--config", str(policy), "--shutdown-delay", "1")
    result: list[httpx.Response] = []
    with httpx.Client(base_url=serve.url) as client:  # one keep-alive connection
        assert client.get("/ready").status_code == 200
        in_flight = _post_in_background(serve.url, result)
        _wait_in_flight(serve)
        signalled = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "draining"
        assert client.get("/health").status_code == 200  # alive, just not taking traffic
        answer = httpx.post(  # new connections are still served during the delay
            serve.url + "/v1/chat/completions",
            json={"model": "mock/a", "messages": [{"role": "user", "content": "late"}]},
        )
        assert answer.status_code == 200
    assert serve.proc.wait(30) in (0, -signal.SIGTERM)
    assert time.monotonic() - signalled >= 1  # the delay, then the drain
    in_flight.join(30)
    assert result and result[0].status_code == 200
    assert result[0].json()["choices"][0]["message"]["content"] == "drained"


def test_a_second_sigterm_ends_the_shutdown_delay(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(SLOW_POLICY)
    serve = Serve("--config", str(policy), "--shutdown-delay", "60")
    result: list[httpx.Response] = []
    in_flight = _post_in_background(serve.url, result)
    _wait_in_flight(serve)
    signalled = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert httpx.get(serve.url + "/ready").json()["status"] == "draining"
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(30) in (0, -signal.SIGTERM)
    assert time.monotonic() - signalled < 10
    in_flight.join(30)
    assert result and result[0].status_code == 200  # drained, not cut off


SETTLED = """
import gc, json, weakref
from turnout.http.server import GC_YOUNG_THRESHOLD, build_app, settle_heap
build_app("routes.yaml", None, sighup=False)
settle_heap()
class Node: pass
a, b = Node(), Node()
a.peer, b.peer = b, a
alive = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"frozen": gc.get_freeze_count(), "young": gc.get_threshold()[0],
                  "expected": GC_YOUNG_THRESHOLD, "cycle_freed": alive() is None}))
"""


def test_startup_objects_are_out_of_the_collectors_sight_and_cycles_still_die() -> None:
    """The serving process freezes what startup built (a full collection walks only
    what serving made) and still frees reference cycles made afterwards."""
    env = {**os.environ, "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SETTLED], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["frozen"] > 20_000  # modules, the compiled policy, pydantic's validators
    assert facts["young"] == facts["expected"] > 700
    assert facts["cycle_freed"]
