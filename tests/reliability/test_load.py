"""Load and lifecycle against a real `turnout serve` process: a fixed-rate mix of
plain and streamed requests with a share of failing upstream calls, while the
policy is rewritten (some versions invalid); every request answered exactly once
and successfully, no growth in RSS or open fds; SIGTERM under load; pool isolation.

The short versions run in CI; `pytest -m soak tests/reliability` runs the long ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.http.conftest import start_gateway
from tests.http.test_serve import Serve

POLICY = """\
version: 1
providers:
  primary:
    type: openai
    base_url: "{url}"
    api_key: sk-primary
    headers: {{x-fake-fault: "status:503"}}
  backup: {{type: openai, base_url: "{url}", api_key: sk-backup}}
defaults:
  retry: {{attempts: 1, backoff: 1ms}}
  timeout: {{total: 10s}}
routes:
  - name: mixed
    match: {{model: mixed}}
    targets:
      - {{model: primary/gpt-4o, weight: 1}}
      - {{model: backup/gpt-4o, weight: 3}}
    fallbacks: [backup/gpt-4o-mini]
  - name: {extra_route}
    match: {{model: {extra_route}}}
    targets: [backup/gpt-4o]
"""
BROKEN = "version: 1\nroutes:\n  - name: mixed\n    targets: [nowhere/x]\n"


def fd_kinds(pid: int) -> Counter[str]:
    """What a process's open fds are (socket, pipe, anon_inode:..., or a path)."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            kinds[os.readlink(f"/proc/{pid}/fd/{fd}").split(":[")[0]] += 1
    return kinds


def proc_usage(pid: int) -> tuple[int, int]:
    """(RSS in kB, open file descriptors) of a process, from /proc, once idle
    connections have had time to close (uvicorn's keep-alive is 5 s)."""
    time.sleep(6)
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def drive(
    url: str, rate: float, seconds: float, on_tick: object = None
) -> tuple[list[str], Counter[str], list[str]]:
    """Send requests at a fixed rate for `seconds`; return (sent ids, answered ids,
    failures). Every third request is streamed."""
    sent: list[str] = []
    answered: Counter[str] = Counter()
    failures: list[str] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(index: int) -> None:
            rid = uuid.uuid4().hex
            sent.append(rid)
            stream = index % 3 == 0
            body = {"model": "mixed", "stream": stream,
                    "messages": [{"role": "user", "content": f"request {index}"}]}  # fmt: skip
            try:
                response = await client.post(
                    "/v1/chat/completions", json=body, headers={"x-request-id": rid}
                )
            except httpx.HTTPError as exc:
                failures.append(f"{index}: {exc!r}")
                return
            answered[response.headers.get("x-request-id", "?")] += 1
            text = response.text
            if response.status_code != 200 or (stream and not text.endswith("data: [DONE]\n\n")):
                failures.append(f"{index}: {response.status_code} {text[-300:]}")
            elif not stream and response.json()["choices"][0]["message"]["content"] != (
                f"echo: request {index}"
            ):
                failures.append(f"{index}: wrong reply {text[:200]}")

        tasks = []
        started = time.monotonic()
        index = 0
        while (elapsed := time.monotonic() - started) < seconds:
            tasks.append(asyncio.create_task(one(index)))
            index += 1
            if callable(on_tick):
                on_tick(elapsed)
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    return sent, answered, failures


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(latency="5ms", record=False) as fake:
        yield fake


def soak(tmp_path: Path, upstream: FakeOpenAI, rate: float, seconds: float, reloads: int) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(POLICY.format(url=upstream.base_url, extra_route="v0"))
    serve = Serve("--config", str(policy), "--watch-interval", "0.05")
    try:
        pid = serve.proc.pid
        warm = max(2.0, seconds / 6)
        asyncio.run(drive(serve.url, rate, warm))  # warm-up: pools, caches, lazy imports
        before = proc_usage(pid)
        kinds_before = fd_kinds(pid)
        every = seconds / (reloads + 1)
        written = [0]

        def rewrite(elapsed: float) -> None:
            due = int(elapsed / every)
            while written[0] < min(due, reloads):
                written[0] += 1
                version = written[0]
                text = (
                    BROKEN
                    if version % 3 == 0
                    else POLICY.format(url=upstream.base_url, extra_route=f"v{version}")
                )
                policy.write_text(text)

        sent, answered, failures = asyncio.run(drive(serve.url, rate, seconds, rewrite))
        assert written[0] == reloads
        policy.write_text(POLICY.format(url=upstream.base_url, extra_route="final"))
        after = proc_usage(pid)
        assert failures == [], failures[:10]
        assert len(sent) == len(set(sent)) >= rate * seconds * 0.9
        assert answered == Counter(sent), "every request answered exactly once"
        ok = serve.metric("turnout_policy_reloads_total", result="ok")
        rejected = serve.metric("turnout_policy_reloads_total", result="rejected")
        assert rejected >= 1 and ok >= 1 and ok + rejected <= reloads + 1
        fallbacks = serve.metric("turnout_attempts_total", provider="primary", outcome="overloaded")
        assert fallbacks > 0, "a share of the upstream calls failed and fell back"
        rss_growth_mb = (after[0] - before[0]) / 1024
        assert rss_growth_mb < 40, f"RSS grew {rss_growth_mb:.1f} MB: {before} -> {after}"
        assert after[1] - before[1] <= 20, (
            f"open fds grew: {before} -> {after}: {kinds_before} -> {fd_kinds(pid)}"
        )
    finally:
        assert serve.stop()


@pytest.mark.timeout(90)
def test_short_soak_with_reloads(tmp_path: Path, upstream: FakeOpenAI) -> None:
    soak(tmp_path, upstream, rate=60, seconds=5, reloads=20)


@pytest.mark.soak
@pytest.mark.timeout(400)
def test_soak_with_reloads(tmp_path: Path, upstream: FakeOpenAI) -> None:
    soak(tmp_path, upstream, rate=150, seconds=120, reloads=20)


def sigterm_under_load(tmp_path: Path, requests: int) -> None:
    slow = FakeOpenAI(latency="400ms").start()
    try:
        policy = tmp_path / "routes.yaml"
        policy.write_text(POLICY.format(url=slow.base_url, extra_route="x"))
        serve = Serve("--config", str(policy))
        results: list[str] = []

        def call(index: int) -> None:
            try:
                response = httpx.post(
                    serve.url + "/v1/chat/completions",
                    json={"model": "x", "messages": [{"role": "user", "content": f"n{index}"}]},
                    headers={"connection": "close"},
                    timeout=20,
                )
                ok = (
                    response.status_code == 200
                    and response.json()["choices"][0]["message"]["content"] == f"echo: n{index}"
                )
                results.append("ok" if ok else f"bad {response.status_code} {response.text[:200]}")
            except httpx.ConnectError:
                results.append("refused")
            except httpx.HTTPError as exc:
                results.append(f"broken {exc!r}")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(requests)]
        for thread in threads[: requests // 2]:
            thread.start()
        deadline = time.monotonic() + 10
        while serve.metric("turnout_requests_in_flight") < requests // 4:
            assert time.monotonic() < deadline, "the load did not build up"
            time.sleep(0.02)
        serve.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        for thread in threads[requests // 2 :]:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert serve.stop()
        assert len(results) == requests
        assert [r for r in results if r not in ("ok", "refused")] == []
        assert results.count("ok") >= requests // 4, "in-flight requests completed"
        assert "refused" in results, "new connections were refused after SIGTERM"
    finally:
        slow.stop()


@pytest.mark.timeout(60)
def test_sigterm_under_load_drains_and_refuses_cleanly(tmp_path: Path) -> None:
    sigterm_under_load(tmp_path, 20)


@pytest.mark.soak
@pytest.mark.timeout(120)
def test_sigterm_under_heavy_load(tmp_path: Path) -> None:
    sigterm_under_load(tmp_path, 200)


@pytest.mark.timeout(60)
def test_a_slow_upstream_cannot_exhaust_connections_for_other_providers(tmp_path: Path) -> None:
    with FakeOpenAI(latency="3s") as slow, FakeOpenAI() as fast:
        policy = tmp_path / "routes.yaml"
        policy.write_text(
            "version: 1\nproviders:\n"
            f'  slow: {{type: openai, base_url: "{slow.base_url}", api_key: k, max_connections: 4}}\n'
            f'  fast: {{type: openai, base_url: "{fast.base_url}", api_key: k}}\n'
            "defaults: {timeout: {total: 4s}, retry: {attempts: 1}}\n"
        )
        gateway = start_gateway(policy)
        try:

            async def run() -> tuple[float, list[int]]:
                async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:

                    async def ask(model: str) -> httpx.Response:
                        return await client.post(
                            "/v1/chat/completions",
                            json={"model": model, "messages": [{"role": "user", "content": "x"}]},
                        )

                    stuck = [asyncio.create_task(ask("slow/gpt-4o")) for _ in range(12)]
                    await asyncio.sleep(0.3)
                    started = time.monotonic()
                    quick = await asyncio.gather(*(ask("fast/gpt-4o") for _ in range(20)))
                    elapsed = time.monotonic() - started
                    assert all(r.status_code == 200 for r in quick)
                    assert len(slow.requests) <= 4, "the slow provider's pool limit held"
                    return elapsed, [r.status_code for r in await asyncio.gather(*stuck)]

            elapsed, slow_statuses = asyncio.run(run())
            assert elapsed < 1.5, f"the fast provider waited {elapsed:.2f}s behind the slow one"
            assert all(s in (200, 504) for s in slow_statuses)
        finally:
            gateway.stop()
