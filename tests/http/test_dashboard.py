"""The dashboard at /ui over real HTTP: off by default, routes, budgets, live requests,
the plan box, reload history, and admin keys when ``keys:`` is on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from turnout.policy.limits import hash_key

from tests.http.conftest import RunningGateway, start_gateway

SALT = "0123456789abcdef0123"
ADMIN, TENANT = "admin-secret-key", "tenant-secret-key"

POLICY = """\
version: 1
gateway: {ui: true}
providers:
  mock: {type: mock}
  broken: {type: mock, options: {script: [{fail: server_error}], repeat: true}}
defaults:
  retry: {attempts: 1, backoff: 1ms}
breaker: {failures: 3, cooldown: 30s}
budgets:
  - {name: daily, scope: gateway, limit: 5, window: day}
routes:
  - name: smart
    match: {model: smart}
    targets: [broken/a]
    fallbacks: [mock/echo]
"""

KEYS = f"""\
keys:
  salt: {SALT}
  clients:
    ops: {{hash: "{hash_key(SALT, ADMIN)}", admin: true}}
    app: {{hash: "{hash_key(SALT, TENANT)}"}}
"""


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY)
    running = start_gateway(path)
    yield running
    running.stop()


def _chat(gateway: RunningGateway, **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "smart", "messages": [{"role": "user", "content": "hello"}]},
        headers=headers,
    )


def test_the_dashboard_is_off_unless_the_policy_turns_it_on(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY.replace("gateway: {ui: true}\n", ""))
    running = start_gateway(path)
    try:
        assert httpx.get(running.url + "/ui").status_code == 404
        assert httpx.get(running.url + "/ui/events").status_code == 404
        assert not running.engine.plugin_manager.has_plugin("turnout.http.ui")
    finally:
        running.stop()


def test_the_page_shows_routes_budgets_and_requests_made_before_it(
    dashboard: RunningGateway,
) -> None:
    assert _chat(dashboard).status_code == 200
    page = httpx.get(dashboard.url + "/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'data-target="broken/a"' in html and 'data-target="mock/echo"' in html
    assert "daily" in html  # the budget row
    initial = html.split('id="initial-requests" type="application/json">')[1].split("</script>")[0]
    (row,) = json.loads(initial)
    assert row["route"] == "smart" and row["served_by"] == "mock/echo"
    assert [a["outcome"] for a in row["attempts"]] == ["server_error", "ok"]
    assert "hello" not in html  # no content, ever
    for asset in ("/ui/app.js", "/ui/style.css"):
        assert httpx.get(dashboard.url + asset).status_code == 200


def test_state_shows_spend_and_live_target_figures(dashboard: RunningGateway) -> None:
    _chat(dashboard)
    state = httpx.get(dashboard.url + "/ui/state").json()
    (route,) = state["routes"]
    targets = {t["name"]: t for t in route["targets"]}
    assert targets["mock/echo"]["latency_ms"] is not None
    assert targets["broken/a"]["role"] == "target" and targets["mock/echo"]["role"] == "fallback"
    (budget,) = state["budgets"]
    assert budget["name"] == "budget 'daily'" and budget["limit"] == 5


def test_events_stream_a_request_as_it_finishes(dashboard: RunningGateway) -> None:
    seen: list[dict[str, object]] = []
    ready = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", dashboard.url + "/ui/events", timeout=10) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "snapshot":
                        ready.set()
                    elif event == "request":
                        seen.append(json.loads(line[6:]))
                        return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert ready.wait(5), "no snapshot event first"
    response = _chat(dashboard, **{"x-request-id": "watch-me"})
    reader.join(5)
    assert response.status_code == 200
    assert seen and seen[0]["request_id"] == "watch-me" and seen[0]["status"] == "ok"


def test_the_plan_box_explains_every_attempt_and_skip(dashboard: RunningGateway) -> None:
    answer = httpx.post(dashboard.url + "/ui/plan", json={"model": "smart", "max_tokens": 10})
    explain = answer.json()["explain"]
    assert "route 'smart'" in explain and "broken/a" in explain and "mock/echo" in explain
    unknown = httpx.post(dashboard.url + "/ui/plan", json={"model": "nope"}).json()
    assert "nope" in unknown["error"]
    assert httpx.post(dashboard.url + "/ui/plan", content=b"[").status_code == 400


def test_a_rejected_reload_appears_with_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY)
    running = start_gateway(path, watch=0.05)
    try:
        path.write_text(POLICY.replace("targets: [broken/a]", "targets: [nowhere/a]"))
        running.wait_for(
            lambda: bool(httpx.get(running.url + "/ui/state").json()["reloads"]), "a reload"
        )
        (reload,) = httpx.get(running.url + "/ui/state").json()["reloads"]
        assert reload["result"] == "rejected"
        assert any("nowhere" in p for p in reload["problems"])
        assert "nowhere" in httpx.get(running.url + "/ui").text
    finally:
        running.stop()


def test_with_keys_only_an_admin_key_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY + KEYS)
    running = start_gateway(path)
    try:
        anonymous = httpx.get(running.url + "/ui")
        assert anonymous.status_code == 401 and 'name="key"' in anonymous.text  # the login form
        assert httpx.get(running.url + "/ui/state").status_code == 401
        tenant = {"authorization": f"Bearer {TENANT}"}
        assert httpx.get(running.url + "/ui/state", headers=tenant).status_code == 403
        assert httpx.get(running.url + "/ui/events", headers=tenant).status_code == 403
        admin = {"authorization": f"Bearer {ADMIN}"}
        assert httpx.get(running.url + "/ui/state", headers=admin).status_code == 200
        # the browser's way: the form sets an HttpOnly cookie scoped to /ui
        with httpx.Client(base_url=running.url) as browser:
            wrong = browser.post("/ui/login", data={"key": TENANT})
            assert wrong.status_code == 403
            login = browser.post("/ui/login", data={"key": ADMIN})
            assert login.status_code == 303
            cookie = login.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
            assert browser.get("/ui").status_code == 200
            assert browser.get("/v1/budgets").status_code == 401  # the cookie is for /ui only
    finally:
        running.stop()


def test_a_slow_page_never_grows_memory(dashboard: RunningGateway) -> None:
    recent = dashboard.engine.plugin_manager.get_plugin("turnout.http.ui")
    queue = recent.subscribe()
    try:
        for _ in range(300):
            _chat(dashboard)
        assert queue.qsize() <= 256
        assert len(list(recent)) == 100
    finally:
        recent.unsubscribe(queue)
    time.sleep(0)
