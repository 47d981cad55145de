"""Closing an engine: once, from sync or async code, or as a context manager."""

from __future__ import annotations

import asyncio
import threading

import pytest
from turnout import Engine, TurnoutError, hookimpl

from tests.conftest import user

POLICY = "providers: {mock: {type: mock}}"


class Closes:
    """A plugin counting ``turnout_engine_closed`` calls, one sync and one async hook."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def turnout_engine_closed(self) -> None:
        self.calls.append("closed")


class AsyncCloses(Closes):
    @hookimpl
    async def turnout_engine_closed(self) -> None:
        await asyncio.sleep(0)
        self.calls.append("closed")


def sync_threads() -> int:
    return sum(t.name == "turnout-sync" for t in threading.enumerate())


def build(*plugins: object) -> Engine:
    return Engine.from_yaml(POLICY, plugins=list(plugins), autoload=False, env={})


def test_with_block_closes_the_plugins_once_and_stops_the_sync_thread() -> None:
    hooks, async_hooks = Closes(), AsyncCloses()
    threads = sync_threads()
    with build(hooks, async_hooks) as engine:
        assert engine.chat_sync(user("hi", model="mock/x")).choices[0].message.content == "hi"
        assert sync_threads() == threads + 1
        assert hooks.calls == []
    assert hooks.calls == ["closed"] and async_hooks.calls == ["closed"]
    assert sync_threads() == threads
    engine.close()
    assert hooks.calls == ["closed"]


def test_close_without_chat_sync_runs_the_close_hooks() -> None:
    hooks = AsyncCloses()
    engine = build(hooks)
    assert engine.plan(user(model="mock/x")).attempts
    engine.close()
    engine.close()
    assert hooks.calls == ["closed"]


def test_a_closed_engine_refuses_requests_with_503() -> None:
    engine = build()
    engine.chat_sync(user(model="mock/x"))
    engine.close()
    threads = sync_threads()
    with pytest.raises(TurnoutError) as caught:
        engine.chat_sync(user(model="mock/x"))
    assert (caught.value.status_code, caught.value.code) == (503, "engine_closed")
    with pytest.raises(TurnoutError, match="closed"):
        asyncio.run(engine.chat(user(model="mock/x")))
    assert sync_threads() == threads  # no loop thread started for the refused call


async def test_async_with_closes_once_and_later_closes_do_nothing() -> None:
    hooks = AsyncCloses()
    async with build(hooks) as engine:
        await engine.chat(user(model="mock/x"))
    assert hooks.calls == ["closed"]
    await engine.aclose()
    engine.close()  # once closed, a no-op even inside a running loop
    assert hooks.calls == ["closed"]


async def test_close_from_async_code_names_aclose() -> None:
    hooks = Closes()
    engine = build(hooks)
    with pytest.raises(RuntimeError, match=r"await engine\.aclose\(\)"):
        engine.close()
    assert hooks.calls == []
    await engine.aclose()
    assert hooks.calls == ["closed"]


async def test_aclose_also_stops_the_loop_thread_chat_sync_started() -> None:
    hooks = Closes()
    threads = sync_threads()
    engine = build(hooks)
    await asyncio.to_thread(engine.chat_sync, user(model="mock/x"))
    assert sync_threads() == threads + 1
    await asyncio.gather(engine.aclose(), engine.aclose())
    assert hooks.calls == ["closed"]
    assert sync_threads() == threads
