"""Shared fixtures: engines built from policy text, with no plugin autoload.

Hypothesis runs derandomized by default (profile ``ci``): the same examples on
every run, no example database, so `bash scripts/test.sh` gives the same answer
every time and a failure found once does not replay into every later run.
``TURNOUT_HYPOTHESIS=explore`` picks the exploring profile for local bug hunts:
fresh random seeds each run (or ``--hypothesis-seed=N`` to replay one) and the
``.hypothesis/`` database, which replays what a previous run found. A failure
found that way belongs in the test as an ``@example(...)`` before it is fixed.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import settings
from turnout import Engine

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("TURNOUT_HYPOTHESIS", "ci"))


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
