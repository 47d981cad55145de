"""Budgets shared by several gateway processes: two `turnout serve` processes on
one real redis-server never overshoot; `--workers N` refuses in-memory state."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.redis_server import redis_server

from .test_serve import ROOT, Serve

# A budget holds "hi" as 9 prompt tokens (its bound: 3 + 4 framing + 2 bytes) and
# max_tokens 2; the mock reports the same use, so hold and actual cost are both
# 11 tokens at $0.001 = $0.011 a request, and a $1.00 budget admits exactly 90,
# whatever the order the two processes reserve in.
POLICY = """\
version: 1
state: {state}
providers:
  mock: {{type: mock, options: {{usage: {{prompt_tokens: 9, completion_tokens: 2}}, latency: 5ms}}}}
models:
  mock/paid: {{input_per_mtok: 1000, output_per_mtok: 1000}}
routes:
  - name: paid
    match: {{model: paid}}
    targets: [mock/paid]
    budget: {{limit: 1.00, window: day}}
"""

BODY = {"model": "paid", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_two_gateway_processes_on_one_redis_never_overshoot(tmp_path: Path) -> None:
    with redis_server() as url:
        policy = tmp_path / "routes.yaml"
        policy.write_text(POLICY.format(state=f"{{backend: redis, url: '{url}'}}"))
        gateways = [Serve("--config", str(policy), "--no-watch") for _ in range(2)]
        try:
            results = asyncio.run(_hammer([g.url for g in gateways], 500))
            spent = httpx.get(gateways[0].url + "/v1/budgets").json()["data"]
        finally:
            for gateway in gateways:
                gateway.stop()
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 429}, statuses
    served = [(port, cost) for status, port, cost in results if status == 200]
    assert len(served) == 90
    assert {port for _, port, _ in results} == {g.port for g in gateways}  # both answered
    row = next(r for r in spent if r["scope"] == "route" and r["match"] == "paid")
    assert row["spent"] <= 1.00
    assert row["reserved"] == 0
    assert row["spent"] == pytest.approx(sum(cost for _, cost in served))
    assert row["spent"] == pytest.approx(0.011 * len(served))


async def _hammer(urls: list[str], n: int) -> list[tuple[int, int, float]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(i: int) -> tuple[int, int, float]:
            url = urls[i % len(urls)]
            response = await client.post(url + "/v1/chat/completions", json=BODY)
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "budget_exceeded"
                assert int(response.headers["retry-after"]) >= 1
            cost = float(response.headers.get("x-turnout-cost", 0))
            return response.status_code, int(url.rsplit(":", 1)[1]), cost

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_workers_refuse_in_memory_state_naming_sqlite_and_redis(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(POLICY.format(state="{backend: memory}"))
    env = {**os.environ, "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "turnout.cli", "serve", "--config", str(policy), "--workers", "2",
         "--port", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "in-memory state" in result.stderr
    assert "SQLite" in result.stderr and "Redis" in result.stderr


def test_workers_start_on_sqlite_state(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(POLICY.format(state=f"{{backend: sqlite, path: '{tmp_path / 's.db'}'}}"))
    serve = Serve("--config", str(policy), "--no-watch", "--workers", "2")
    try:
        response = httpx.post(serve.url + "/v1/chat/completions", json=BODY)
        assert response.status_code == 200
        assert response.headers["x-turnout-cost"] == "0.011000"
    finally:
        assert serve.stop()
