"""Reloading a policy whose ``state:`` changed: rejected with a problem naming
``state:``, never accepted and ignored; the backend in use keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from turnout import Engine, PolicyError

from tests.conftest import user

POLICY = """\
version: 1
state: {state}
providers:
  mock: {{type: mock, options: {{reply: "{reply}", usage: {{prompt_tokens: 8, completion_tokens: 2}}}}}}
models:
  mock/paid: {{input_per_mtok: 1000, output_per_mtok: 1000}}
routes:
  - name: paid
    match: {{model: paid}}
    targets: [mock/paid]
    budget: {{limit: 1.00, window: day}}
"""

REQUEST = user("hi", model="paid", max_tokens=2)


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY.format(state="{backend: memory}", reply="first"))
    built = Engine.from_file(path, autoload=False)
    yield built
    await built.aclose()


async def _reply(engine: Engine) -> str | None:
    return (await engine.chat(REQUEST)).choices[0].message.content


async def test_a_reload_that_changes_state_is_rejected_naming_state(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "routes.yaml"
    backend = engine.ledger.backend
    assert await _reply(engine) == "first"
    path.write_text(
        POLICY.format(state=f"{{backend: sqlite, path: '{tmp_path / 's.db'}'}}", reply="second")
    )
    with pytest.raises(PolicyError) as caught:
        engine.reload()
    (problem,) = caught.value.problems
    assert problem.message.startswith("state: changed (memory -> sqlite ")
    assert problem.hint is not None and "restart" in problem.hint
    assert str(path) in str(problem)
    # the old policy and its backend keep serving, with what they had counted
    assert engine.ledger.backend is backend
    assert await _reply(engine) == "first"
    assert not (tmp_path / "s.db").exists()


async def test_a_reload_that_keeps_state_is_applied(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    # the same backend, written differently, with another on_error choice
    path.write_text(POLICY.format(state="{budgets_on_error: open}", reply="second"))
    engine.reload()
    assert await _reply(engine) == "second"


async def test_another_redis_url_is_rejected_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        POLICY.format(state="{backend: redis, url: 'redis://:pw@h1:6379/0'}", reply="a")
    )
    engine = Engine.from_file(path, autoload=False)
    try:
        path.write_text(
            POLICY.format(state="{backend: redis, url: 'redis://:pw@h2:6379/0'}", reply="a")
        )
        with pytest.raises(PolicyError) as caught:
            engine.reload()
        assert "state: changed (another redis url" in str(caught.value)
        assert "pw" not in str(caught.value)
    finally:
        await engine.aclose()


async def test_state_of_a_policy_that_starts_metering_is_applied(tmp_path: Path) -> None:
    """Nothing was metered yet (no budgets): the reload builds the backend
    ``state:`` names, and the budget counts there."""
    from turnout.state.sqlite import SQLiteState

    path = tmp_path / "routes.yaml"
    unmetered = POLICY.format(state="{}", reply="a").replace(
        "    budget: {limit: 1.00, window: day}\n", ""
    )
    path.write_text(unmetered)
    engine = Engine.from_file(path, autoload=False)
    try:
        await engine.chat(REQUEST)
        state = f"{{backend: sqlite, path: '{tmp_path / 's.db'}'}}"
        path.write_text(POLICY.format(state=state, reply="b"))
        engine.reload()
        assert isinstance(engine.ledger.backend, SQLiteState)
        assert await _reply(engine) == "b"
        rows = await engine.ledger.overview(engine.table.limits, ["paid"])  # type: ignore[arg-type]
        assert [r["spent"] for r in rows] == [pytest.approx(0.01)]
        # from now on it is in use: moving it again is rejected
        path.write_text(POLICY.format(state="{backend: memory}", reply="c"))
        with pytest.raises(PolicyError, match=r"state: changed \(sqlite .* -> memory\)"):
            engine.reload()
        assert await _reply(engine) == "b"
    finally:
        await engine.aclose()
    assert (tmp_path / "s.db").exists()
