"""Shared fixtures: engines built from policy text, with no plugin autoload."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from turnout import Engine


def build_engine(policy: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("autoload", False)
    kwargs.setdefault("env", {})
    return Engine.from_yaml(textwrap.dedent(policy), file="routes.yaml", **kwargs)


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., Engine]]:
    """Build engines from policy text; closes their clients after the test."""
    built: list[Engine] = []

    def make(policy: str, **kwargs: Any) -> Engine:
        engine = build_engine(policy, **kwargs)
        built.append(engine)
        return engine

    yield make
    for engine in built:
        await engine.aclose()


def user(text: str = "hello", **extra: Any) -> dict[str, Any]:
    """A one-message request body."""
    return {"messages": [{"role": "user", "content": text}], **extra}
