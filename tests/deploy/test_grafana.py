"""deploy/grafana/turnout.json asks only for metrics a live gateway exports.

The gateway is the image's command line (see conftest) serving the shipped
policy; the test drives the traffic that makes every series appear (a plain
request, a stream, a retry then a fallback, a policy reload) and then checks
each metric name in the dashboard's expressions against ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import DEPLOY, ImageGateway
from tests.fakes.faults import Fault
from tests.fakes.openai_upstream import FakeOpenAI

DASHBOARD = DEPLOY / "grafana" / "turnout.json"
METRIC = re.compile(r"\bturnout_[a-z0-9_]+")

# what issue 19 asks the dashboard to show, as the metric each needs
REQUIRED = {
    "requests": "turnout_requests_total",
    "errors by class": "turnout_attempts_total",
    "latency percentiles": "turnout_request_duration_seconds_bucket",
    "overhead percentiles": "turnout_gateway_overhead_seconds_bucket",
    "time to first token": "turnout_time_to_first_token_seconds_bucket",
    "tokens": "turnout_tokens_total",
    "cost": "turnout_cost_usd_total",
    "budgets remaining": "turnout_budget_remaining",
    "breakers": "turnout_breaker_state",
    "fallbacks": "turnout_fallbacks_total",
    "retries": "turnout_retries_total",
}


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL string: panel targets and templating queries."""
    found = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            found.append(query["query"] if isinstance(query, dict) else query)
    return found


def exported(url: str) -> set[str]:
    text = httpx.get(url + "/metrics", timeout=5).text
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def drive_traffic(gateway: ImageGateway, upstream: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    client.chat.completions.create(model="chat", messages=messages, max_tokens=20)
    stream = client.chat.completions.create(
        model="chat", messages=messages, max_tokens=20, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: hello"
    upstream.script(Fault.status(503), Fault.status(503))  # a retry, then a fallback
    reply = client.chat.completions.create(model="chat", messages=messages, max_tokens=20)
    assert reply.model.startswith("gpt-4o") and not reply.model.startswith("gpt-4o-mini")
    # a reload: the same policy written anew, as a ConfigMap update does
    swap = gateway.policy.with_suffix(".new")
    swap.write_text(gateway.policy.read_text())
    os.replace(swap, gateway.policy)
    deadline = time.monotonic() + 15
    while "turnout_policy_reloads_total" not in exported(gateway.url):
        assert time.monotonic() < deadline, "the policy was not reloaded"
        time.sleep(0.2)


def test_every_metric_in_the_dashboard_is_exported(
    image_gateway: ImageGateway, upstream: FakeOpenAI
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert names, "the dashboard queries no turnout metric"
    upstream.reset()
    drive_traffic(image_gateway, upstream)
    missing = sorted(names - exported(image_gateway.url))
    assert missing == [], f"the dashboard asks for metrics /metrics does not have: {missing}"


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert {what: metric for what, metric in REQUIRED.items() if metric not in names} == {}
    by_panel = {
        panel["title"]: " ".join(t["expr"] for t in panel.get("targets", []))
        for panel in dashboard["panels"]
    }
    by_class = [t for t, e in by_panel.items() if "turnout_attempts_total" in e and "outcome" in e]
    assert by_class, "no panel breaks upstream errors down by failure class"
    for metric in ("turnout_tokens_total", "turnout_cost_usd_total"):
        assert any(metric in e and "provider" in e and "model" in e for e in by_panel.values()), (
            f"no panel shows {metric} by provider and model"
        )


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}" and "datasource" in variables
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used)
