"""The example third-party provider package (examples/turnout-echo-provider),
pip-installed into the running environment and found through its ``turnout``
entry point by an engine with autoload on; uninstalled afterwards.

Runs in the README's fresh venv: pip is always there; the environment's
setuptools builds the package when it can (no network), else pip fetches
setuptools for an isolated build, as it did for turnout itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest
from turnout import Engine, PolicyError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "turnout-echo-provider"
DIST = "turnout-echo-provider"
MODULE = "turnout_echo_provider"

POLICY = """
providers:
  parrot: {type: echo, options: {prefix: "parrot: "}}
  loud: {type: echo, options: {upper: true}}
routes:
  - name: direct
    match: {model: "*/*"}
"""


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _can_build_offline() -> bool:
    """Whether this environment's setuptools can build a wheel by itself (70.1+
    has bdist_wheel built in; older ones need the ``wheel`` package)."""
    try:
        version = distribution("setuptools").version
    except PackageNotFoundError:
        return False
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _forget_module() -> None:
    for name in [n for n in sys.modules if n == MODULE or n.startswith(MODULE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Install a copy of the example (so the build leaves nothing in the repo)."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not available in this environment")
    try:
        distribution(DIST)
        pytest.skip(f"{DIST} is already installed here; not touching it")
    except PackageNotFoundError:
        pass
    source = tmp_path_factory.mktemp("example") / "turnout-echo-provider"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    args = ["install", "--no-deps", "-q"]
    if _can_build_offline():
        args.append("--no-build-isolation")
    result = _pip(*args, str(source))
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    _forget_module()
    try:
        yield
    finally:
        _pip("uninstall", "-y", "-q", DIST)
        _forget_module()


def _engine(autoload: bool) -> Engine:
    return Engine.from_yaml(textwrap.dedent(POLICY), file="routes.yaml", autoload=autoload, env={})


async def test_the_installed_package_declares_a_turnout_entry_point(installed):
    names = {ep.name: ep.value for ep in entry_points(group="turnout")}
    assert names.get("echo") == MODULE


async def test_an_autoloading_engine_routes_to_the_installed_provider(installed):
    engine = _engine(autoload=True)
    try:
        response = await engine.chat(
            {"model": "parrot/anything", "messages": [{"role": "user", "content": "hi there"}]}
        )
        assert response.choices[0].message.content == "parrot: hi there"
        assert response.extra_fields.provider == "parrot"
        assert response.extra_fields.cost == 0  # the example declares itself free
        assert response.usage.completion_tokens == 3

        stream = engine.stream(
            {
                "model": "loud/anything",
                "messages": [{"role": "user", "content": "stream me"}],
                "stream": True,
            }
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "ECHO: STREAM ME"
        assert stream.extra_fields.billed_usage.completion_tokens == 3
    finally:
        await engine.aclose()


def test_without_autoload_the_type_is_unknown(installed):
    with pytest.raises(PolicyError) as info:
        _engine(autoload=False)
    assert "unknown provider type 'echo'" in str(info.value)


def test_its_options_are_validated_with_the_policy(installed):
    bad = POLICY.replace("{upper: true}", "{uper: true}")
    with pytest.raises(PolicyError) as info:
        Engine.from_yaml(textwrap.dedent(bad), file="routes.yaml", autoload=True, env={})
    assert "routes.yaml:4" in str(info.value) and "did you mean 'upper'" in str(info.value)
