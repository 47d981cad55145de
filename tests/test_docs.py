"""Every fenced code block in README.md and docs/*.md is run or checked here, so
the docs cannot drift from the code.

The convention (docs/README.md says the same for people writing docs). A block's
info string is its language, then optional words; the test does:

- ``python``: runs it as a script (``python block.py``, so no top-level ``await``:
  use ``asyncio.run``) in a fresh directory holding a copy of the default
  routes.yaml, with no provider API keys set;
- ``python pytest``: saves it as ``test_block.py`` and runs pytest on it with no
  project configuration (asyncio mode strict: mark async tests yourself);
- ``sh`` / ``bash``: runs it with ``bash -e -o pipefail`` in such a directory,
  with the virtualenv's ``bin`` on PATH (as after ``. .venv/bin/activate``) and
  ``.venv`` linked there; every command must succeed;
- ``sh parse-only`` / ``bash parse-only``: checks it with ``bash -n`` (for
  commands that install things, start servers or take minutes);
- ``yaml``: a complete policy; it must pass what ``turnout check`` runs, with the
  ``${VAR}`` it names set;
- ``yaml fragment``: a piece of a policy; it is merged into the default routes.yaml
  (mappings key by key, ``routes`` by ``name``, other lists replaced) and the
  result must pass ``turnout check``; a fragment's providers must be declared in
  it or in routes.yaml;
- ``text output``: the exact standard output of the block just before it;
- ``json`` / ``toml``: must parse.

Python and shell blocks that talk to the gateway use ``127.0.0.1:8080`` or
``localhost:8080``: the test serves the default routes.yaml with ``turnout
serve`` on a free port and puts that port in the block's place. Any other info
string (or none) fails the test, naming the block.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML
from turnout.contract.registry import collect_registry, make_plugin_manager
from turnout.errors import PolicyError
from turnout.policy.compile import compile_policy
from turnout.policy.loader import parse_document

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ROUTES = ROOT / "routes.yaml"
VENV_BIN = Path(sys.executable).parent
GATEWAY = re.compile(r"(127\.0\.0\.1|localhost):8080")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
KINDS = {
    ("python",), ("python", "pytest"), ("sh",), ("bash",), ("sh", "parse-only"),
    ("bash", "parse-only"), ("yaml",), ("yaml", "fragment"), ("text", "output"),
    ("json",), ("toml",),
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    info: tuple[str, ...]
    text: str
    previous: Block | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks_of(doc: Path) -> list[Block]:
    found: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, info = opening.groups()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end])
            end += 1
        previous = found[-1] if found else None
        text = "\n".join(body) + "\n"
        found.append(Block(doc, index + 1, tuple(info.split()), text, previous))
        index = end + 1
    return found


BLOCKS = [block for doc in DOCS for block in blocks_of(doc)]


def test_the_docs_have_blocks_and_a_note_on_the_convention() -> None:
    assert len(BLOCKS) > 30
    note = (ROOT / "docs" / "README.md").read_text()
    for kind in (
        "python pytest",
        "yaml fragment",
        "parse-only",
        "text output",
        "tests/test_docs.py",
    ):
        assert kind in note, kind


# -- the gateway that python and sh blocks talk to ----------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``turnout serve`` on the default routes.yaml, on a free port."""
    home = tmp_path_factory.mktemp("gateway")
    shutil.copy(ROUTES, home / "routes.yaml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "turnout.cli", "serve", "--port", str(port), "--no-watch"],
        cwd=home,
        env=block_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: {server.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def block_env(home: Path) -> dict[str, str]:
    """A newcomer's environment: the virtualenv active, no provider keys."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": sys.prefix,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A user's directory: the default routes.yaml and a .venv."""
    shutil.copy(ROUTES, tmp_path / "routes.yaml")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    return tmp_path


def run_block(block: Block, workdir: Path, request: pytest.FixtureRequest) -> str:
    """Run a python, python pytest or sh block as written; return its stdout."""
    text = block.text
    if GATEWAY.search(text):
        port = request.getfixturevalue("gateway")
        text = GATEWAY.sub(lambda m: f"{m.group(1)}:{port}", text)
    language, *flags = block.info
    if language == "python" and flags == ["pytest"]:
        (workdir / "test_block.py").write_text(text)
        (workdir / "pytest.ini").write_text("[pytest]\n")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_block.py"]
    elif language == "python":
        (workdir / "block.py").write_text(text)
        command = [sys.executable, "block.py"]
    else:
        (workdir / "block.sh").write_text(text)
        command = ["bash", "-e", "-o", "pipefail", "block.sh"]
    result = subprocess.run(
        command,
        cwd=workdir,
        env=block_env(workdir),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (
        f"{block.where} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


# -- policies -------------------------------------------------------------------

REGISTRY = collect_registry(make_plugin_manager())


def check_policy(text: str, file: str) -> None:
    """What `turnout check` does, with every ``${VAR}`` the text names set (as the
    reader who copies it would), so a provider's options that need them validate."""
    env = {name: f"doc-{name.lower()}" for name in re.findall(r"\$\{(\w+)", text)}
    try:
        document = parse_document(text, file=file, env=env)
        table = compile_policy(
            document, REGISTRY.providers, REGISTRY.strategies, REGISTRY.guardrails
        )
    except PolicyError as exc:
        pytest.fail(str(exc))
    assert table.providers, f"{file}: a policy that declares no providers serves nothing"


def merged(base: Any, fragment: Any) -> Any:
    """``fragment`` laid over ``base``: mappings key by key, route lists by name."""
    if isinstance(base, dict) and isinstance(fragment, dict):
        out = dict(base)
        for key, value in fragment.items():
            out[key] = merged(base[key], value) if key in base else value
        return out
    if _named(base) and _named(fragment):
        by_name = {item["name"]: item for item in base}
        for item in fragment:
            by_name[item["name"]] = merged(by_name.get(item["name"], {}), item)
        return list(by_name.values())
    return fragment


def _named(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


# -- the test -------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.where}-{'-'.join(b.info)}" for b in BLOCKS])
def test_block(block: Block, workdir: Path, request: pytest.FixtureRequest) -> None:
    assert block.info in KINDS, (
        f"{block.where}: a code block's info string must be one of "
        f"{sorted(' '.join(k) for k in KINDS)}, not {' '.join(block.info)!r} "
        "(see docs/README.md and the docstring of tests/test_docs.py)"
    )
    language, *flags = block.info
    if block.info == ("text", "output"):
        previous = block.previous
        assert previous is not None and previous.info[0] in ("python", "sh", "bash"), (
            f"{block.where}: a text output block follows the python or sh block it shows"
        )
        assert run_block(previous, workdir, request).rstrip() == block.text.rstrip()
    elif language in ("python", "sh", "bash") and flags != ["parse-only"]:
        run_block(block, workdir, request)
    elif flags == ["parse-only"]:
        result = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        assert result.returncode == 0, f"{block.where}: {result.stderr}"
    elif block.info == ("yaml",):
        # blank lines first, so a problem's line is the line in the doc
        check_policy("\n" * block.line + block.text, str(block.doc.relative_to(ROOT)))
    elif block.info == ("yaml", "fragment"):
        yaml = YAML(typ="safe", pure=True)
        policy = merged(yaml.load(ROUTES.read_text()), yaml.load(block.text))
        check_policy(json.dumps(policy), f"{block.where} merged into routes.yaml")
    elif language == "json":
        json.loads(block.text)
    elif language == "toml":
        tomllib.loads(block.text)


def test_fragments_merge_into_the_default_policy_by_route_name() -> None:
    base = {"providers": {"mock": {"type": "mock"}}, "routes": [{"name": "a", "x": 1}]}
    fragment = {"providers": {"o": {"type": "openai"}}, "routes": [{"name": "a", "y": 2}]}
    assert merged(base, fragment) == {
        "providers": {"mock": {"type": "mock"}, "o": {"type": "openai"}},
        "routes": [{"name": "a", "x": 1, "y": 2}],
    }


def test_a_broken_example_fails(tmp_path: Path) -> None:
    """The checks can fail: an invalid policy, and a block whose command fails."""
    with pytest.raises(pytest.fail.Exception, match="unknown provider 'local'"):
        check_policy("version: 1\nproviders: {mock: {type: mock}}\n"
                     "models: {local/x: {input_per_mtok: 0}}\n", "x.yaml")  # fmt: skip
    broken = Block(ROOT / "README.md", 1, ("sh",), "turnout check nothere.yaml\n", None)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    with pytest.raises(AssertionError, match="file not found"):
        run_block(broken, tmp_path, None)  # type: ignore[arg-type]


_PATH = re.compile(r"`((?:engine|plugins|tests|scripts|benchmarks|examples|docs)/[\w/.-]*\w/?)")
_OLD_IMPORT = re.compile(r"`(?:engine|plugins)\.[A-Z]\w*")  # engine.chat() is a variable


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_the_files_and_import_names_the_prose_mentions_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = sorted({p for p in _PATH.findall(text) if not (ROOT / p).exists()})
    assert not missing, f"{doc.name} names files that do not exist: {missing}"
    old = sorted(set(_OLD_IMPORT.findall(text)))
    assert not old, f"{doc.name}: the import name is turnout (turnout.Provider), not {old}"


TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_a_doc_points_at_exists() -> None:
    """docs/security.md (and any page) names the test of each promise: each exists."""
    missing = []
    for doc in DOCS:
        for path, name in TEST_REF.findall(doc.read_text(encoding="utf-8")):
            source = ROOT / path
            text = source.read_text(encoding="utf-8") if source.exists() else ""
            if not re.search(rf"^(async )?def {name}\(", text, re.M):
                missing.append(f"{doc.relative_to(ROOT)}: {path}::{name}")
    assert not missing, missing
