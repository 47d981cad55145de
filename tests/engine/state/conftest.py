"""Backends under test: in-memory, a real SQLite file, a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from turnout.state import StateBackend
from turnout.state.memory import MemoryState
from turnout.state.redis import RedisState
from turnout.state.sqlite import SQLiteState

from tests.redis_server import redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture
def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], StateBackend]]:
    """Build backends by name; a Redis one gets a fresh key prefix per test."""
    made: list[StateBackend] = []

    def make(name: str) -> StateBackend:
        backend: StateBackend
        if name == "memory":
            backend = MemoryState()
        elif name == "sqlite":
            backend = SQLiteState(tmp_path / "state.db")
        else:
            url = request.getfixturevalue("redis_url")
            # 32 connections opened at once on a loaded 2-core machine can take
            # more than the 1 s default connect timeout; these tests are not about it
            backend = RedisState(
                url, prefix=f"t{id(made)}:{len(made)}:{request.node.name}:", timeout=5.0
            )
        made.append(backend)
        return backend

    yield make


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, make_backend: Callable[[str], StateBackend]
) -> AsyncIterator[StateBackend]:
    state = make_backend(request.param)
    yield state
    await state.aclose()
