"""The distribution claims one import name, ``turnout``, and lists every package it ships.

The repository keeps ``engine/`` and ``plugins/``; pyproject maps them to
``turnout`` and ``turnout.plugins``. A package folder missing from that list
would install without its modules, so the list is checked against the tree.
"""

from __future__ import annotations

import ast
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAPPED = {"engine": "turnout", "plugins": "turnout.plugins"}


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, name in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    return found


def test_every_package_folder_is_in_the_distribution() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {name: folder for folder, name in MAPPED.items()}
    assert set(setuptools["packages"]) == _packages_on_disk()


def test_code_imports_turnout_never_the_folder_names() -> None:
    """``import engine`` would load a second copy of every module beside ``turnout``."""
    offenders = []
    for folder in ("engine", "plugins", "tests", "benchmarks", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                    for n in names
                    if n.split(".")[0] in MAPPED
                ]
    assert offenders == []
