"""The container image's command line, run from a plain venv.

Where podman runs, test_container.py builds and runs the image itself; here,
on every machine, it is checked the next best way: its build stage's files
(the Dockerfile's COPY lines) are copied into a fresh folder and
``pip install``ed into a fresh venv, and its ENTRYPOINT + CMD run from that
venv against the policy the image ships (deploy/policy/routes.yaml), with a
real Redis and the fake OpenAI upstream behind it. Only the port (8080 in the
image, a free one here) and the policy's folder (/etc/turnout) are swapped.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.redis_server import redis_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE_PORT = "8080"
IMAGE_POLICY_DIR = "/etc/turnout"


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction's arguments."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), arguments
    return value


def last(keyword: str) -> str:
    found = [rest for key, rest in dockerfile() if key == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def image_command() -> list[str]:
    return exec_form(last("ENTRYPOINT")) + exec_form(last("CMD"))


def healthcheck_command() -> list[str]:
    words = last("HEALTHCHECK").split(" CMD ", 1)
    assert len(words) == 2, "HEALTHCHECK has no CMD"
    return exec_form(words[1].strip())


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with turnout installed from what the Dockerfile COPYs."""
    context = tmp_path_factory.mktemp("image-context")
    for keyword, rest in dockerfile():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _target = shlex.split(rest)
        for source in sources:
            if source.startswith("deploy/"):
                continue  # the runtime stage's policy, not part of the build
            origin = ROOT / source.rstrip("/")
            if origin.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(origin, context / origin.name, ignore=ignore)
            else:
                shutil.copy(origin, context / origin.name)
    venv = tmp_path_factory.mktemp("image-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", str(context)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return venv


@dataclass
class ImageGateway:
    """The image's command running from the venv: its process, port and policy."""

    proc: subprocess.Popen[bytes]
    port: int
    policy: Path
    venv: Path
    command: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the gateway did not become ready")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_image(venv: Path, policy_dir: Path, env: dict[str, str]) -> ImageGateway:
    """Run the Dockerfile's ENTRYPOINT + CMD from `venv` (port and policy folder swapped)."""
    port = free_port()
    command = [arg.replace(IMAGE_POLICY_DIR, str(policy_dir)) for arg in image_command()]
    command[command.index("--port") + 1] = str(port)
    command[0] = str(venv / "bin" / command[0])
    environment = {**os.environ, **env, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    gateway = ImageGateway(proc, port, policy_dir / "routes.yaml", venv, command)
    try:
        gateway.wait_ready()
    except BaseException:
        gateway.stop()
        raise
    return gateway


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def image_env(upstream: FakeOpenAI, redis_url: str) -> dict[str, str]:
    """What an operator sets: the Redis URL, the API key; and the fake's URL."""
    return {
        "REDIS_URL": redis_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": upstream.base_url,
    }


def policy_folder(tmp_path: Path) -> Path:
    """A copy of the shipped policy in a folder of its own (the image's /etc/turnout)."""
    folder = tmp_path / "etc-turnout"
    folder.mkdir()
    shutil.copy(DEPLOY / "policy" / "routes.yaml", folder / "routes.yaml")
    return folder


@pytest.fixture(scope="module")
def image_gateway(
    image_venv: Path, image_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageGateway]:
    gateway = start_image(image_venv, policy_folder(tmp_path_factory.mktemp("policy")), image_env)
    yield gateway
    gateway.stop()
