"""Stored responses in-process: the TTL from the policy, a SQLite store that
outlives the engine, and store: false."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from turnout import Engine
from turnout.errors import TurnoutError

POLICY = """\
version: 1
state: {state}
providers:
  mock: {{type: mock}}
routes:
  - {{name: smart, match: {{model: smart}}, targets: [mock/echo]}}
"""


async def test_a_response_is_gone_after_the_ttl() -> None:
    engine = Engine.from_yaml(POLICY.format(state="{responses_ttl: 200ms}"), autoload=False)
    made = await engine.responses.create({"model": "smart", "input": "soon gone"})
    assert (await engine.responses.retrieve(made["id"]))["status"] == "completed"
    await asyncio.sleep(0.3)
    with pytest.raises(TurnoutError, match="no stored response") as info:
        await engine.responses.retrieve(made["id"])
    assert info.value.status_code == 404
    await engine.aclose()


async def test_a_sqlite_store_outlives_the_engine(tmp_path: Path) -> None:
    policy = POLICY.format(state=f"{{backend: sqlite, path: '{tmp_path / 'state.db'}'}}")
    first = Engine.from_yaml(policy, autoload=False)
    made = await first.responses.create({"model": "smart", "input": "my name is Ada"})
    await first.aclose()
    second = Engine.from_yaml(policy, autoload=False)
    follow = await second.responses.create(
        {"model": "smart", "input": "and again", "previous_response_id": made["id"]}
    )
    assert follow["previous_response_id"] == made["id"]
    items = await second.responses.input_items(follow["id"], order="asc")
    assert [i["content"][0]["text"] for i in items["data"]] == ["and again"]
    await second.aclose()


async def test_the_stored_history_is_sent_before_the_new_input() -> None:
    engine = Engine.from_yaml(POLICY.format(state="{}"), autoload=False)
    first = await engine.responses.create({"model": "smart", "input": "one", "instructions": "A"})
    second = await engine.responses.create(
        {"model": "smart", "input": "two", "previous_response_id": first["id"], "instructions": "B"}
    )
    record = await engine.responses.store.load(second["id"], None)
    assert record is not None
    assert [m["content"] for m in record.history] == ["one", "one", "two", "two"]
    await engine.aclose()
