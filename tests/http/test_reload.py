"""Hot reload: a changed policy file is swapped in; a broken one is rejected."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from .conftest import RunningGateway, start_gateway

GOOD = """\
version: 1
providers:
  mock: {{type: mock, options: {{reply: "{reply}"}}}}
routes:
  - name: main
    match: {{model: main}}
    targets: [mock/a]
"""


@pytest.fixture
def reloading(tmp_path: Path) -> RunningGateway:
    policy = tmp_path / "routes.yaml"
    policy.write_text(GOOD.format(reply="first"))
    gateway = start_gateway(policy, watch=0.05)
    yield gateway  # type: ignore[misc]
    gateway.stop()


def _reply(gateway: RunningGateway) -> str | None:
    completion = gateway.client().chat.completions.create(
        model="main", messages=[{"role": "user", "content": "x"}]
    )
    return completion.choices[0].message.content


def test_a_changed_file_is_reloaded(reloading: RunningGateway) -> None:
    assert _reply(reloading) == "first"
    ok = reloading.metric("turnout_policy_reloads_total", result="ok")
    reloading.policy.write_text(GOOD.format(reply="second, a longer reply"))
    reloading.wait_for(lambda: _reply(reloading) == "second, a longer reply", "the new policy")
    assert reloading.metric("turnout_policy_reloads_total", result="ok") >= ok + 1


def test_a_broken_file_is_rejected_and_the_old_policy_keeps_serving(
    reloading: RunningGateway,
) -> None:
    rejected = reloading.metric("turnout_policy_reloads_total", result="rejected")
    reloading.policy.write_text("version: 1\nroutes:\n  - name: main\n    targets: [nope/x]\n")
    reloading.wait_for(
        lambda: reloading.metric("turnout_policy_reloads_total", result="rejected") >= rejected + 1,
        "the rejection",
    )
    assert _reply(reloading) == "first"
    with pytest.raises(openai.NotFoundError):
        reloading.client().chat.completions.create(
            model="other", messages=[{"role": "user", "content": "x"}]
        )


def test_a_file_caught_empty_mid_write_is_never_loaded(reloading: RunningGateway) -> None:
    """Editors that truncate then write leave an empty file for a moment; an empty
    policy would compile (no routes) and drop every route, so it is rejected."""
    rejected = reloading.metric("turnout_policy_reloads_total", result="rejected")
    reloading.policy.write_text("")
    reloading.wait_for(
        lambda: reloading.metric("turnout_policy_reloads_total", result="rejected") >= rejected + 1,
        "the rejection of the empty file",
    )
    assert _reply(reloading) == "first"


def test_a_changed_state_backend_is_rejected_naming_state(
    reloading: RunningGateway, tmp_path: Path
) -> None:
    rejected = reloading.metric("turnout_policy_reloads_total", result="rejected")
    metered = GOOD + "    rate_limit: {{rpm: 1000}}\n"
    reloading.policy.write_text(metered.format(reply="first"))  # memory, now in use
    reloading.wait_for(lambda: reloading.engine.table.limits is not None, "the rate limit")
    state = f"state: {{{{backend: sqlite, path: '{tmp_path / 's.db'}'}}}}\n"
    reloading.policy.write_text((state + metered).format(reply="second"))
    reloading.wait_for(
        lambda: reloading.metric("turnout_policy_reloads_total", result="rejected") >= rejected + 1,
        "the rejection of the new state backend",
    )
    assert _reply(reloading) == "first"
    last = reloading.app.reloader.history[-1]
    assert last["result"] == "rejected"
    assert any(p.split(": ", 1)[1].startswith("state: changed") for p in last["problems"])
