"""Built-in plugins use only the public plugin API, as a third-party plugin must.

Every import in ``plugins/`` (TYPE_CHECKING and function-local ones included)
of something under ``turnout`` must be ``turnout`` itself, ``turnout.plugin_api``
(hook plugins), ``turnout.provider_api`` (providers), or a module of the
plugin's own package (``turnout.plugins.cache.*`` from ``plugins/cache/``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
PUBLIC = {"turnout", "turnout.plugin_api", "turnout.provider_api"}


def own_package(path: Path) -> str:
    """``turnout.plugins.cache`` for plugins/cache/*.py; the module itself for a
    single-module plugin such as plugins/logging.py."""
    relative = path.relative_to(PLUGINS)
    top = relative.parts[0].removesuffix(".py")
    return f"turnout.plugins.{top}"


def private_imports(source: str, package: str) -> list[str]:
    """The turnout modules ``source`` imports that are neither public nor its own."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside its own package
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            if name != "turnout" and not name.startswith("turnout."):
                continue
            if name in PUBLIC or name == package or name.startswith(package + "."):
                continue
            found.append(name)
    return found


def plugin_files() -> list[Path]:
    return sorted(PLUGINS.rglob("*.py"))


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_built_in_plugin_imports_only_the_public_api(path: Path) -> None:
    assert private_imports(path.read_text(), own_package(path)) == [], (
        f"{path.relative_to(ROOT)} imports turnout internals; export what it needs "
        "from turnout.plugin_api (or turnout.provider_api) instead"
    )


def test_the_check_sees_every_kind_of_private_import() -> None:
    source = """
from typing import TYPE_CHECKING
from turnout import hookimpl
from turnout.plugin_api import ChatRequest
from turnout.plugins.cache.store import CacheStore
import turnout.metrics
from turnout.policy.compile import compile_policy
if TYPE_CHECKING:
    from turnout.run.context import RequestContext

def later():
    from turnout.plugins.guardrails.acting import count
"""
    assert private_imports(source, "turnout.plugins.cache") == [
        "turnout.metrics",
        "turnout.policy.compile",
        "turnout.run.context",
        "turnout.plugins.guardrails.acting",
    ]


def test_every_plugin_package_is_checked() -> None:
    checked = {path.relative_to(PLUGINS).parts[0] for path in plugin_files()}
    assert {
        "cache",
        "guardrails",
        "logging.py",
        "metrics.py",
        "providers",
        "strategies.py",
    } <= checked
