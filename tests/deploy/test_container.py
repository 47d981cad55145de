"""The image itself: built from deploy/Dockerfile with podman and run.

``scripts/build-image.sh`` builds it (a Debian base from Debian's packages where
no registry is reachable). Skipped where podman is not installed or the base
cannot be built; test_image.py checks the same command line from a venv
everywhere. The first run builds the base (minutes); later ones reuse it and
podman's layer cache.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.deploy.conftest import IMAGE_PORT, ROOT, flag, free_port, image_command
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.skipif(
    shutil.which("podman") is None,
    reason="podman is not installed: the image is built and run only where a container "
    "engine is (scripts/build-image.sh); test_image.py runs its command from a venv instead",
)

TAG = "localhost/turnout:test"


@dataclass
class Podman:
    """podman with the runtime and rlimits this host needs (as the build script picks them)."""

    runtime: list[str]
    limits: list[str]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *self.runtime, *args], capture_output=True, text=True, timeout=timeout
        )

    def start(self, name: str, *args: str) -> None:
        result = self("run", "-d", "--name", name, *self.limits, *args)
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def image() -> str:
    build = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image.sh"), TAG],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if build.returncode == 2:  # the script's "cannot build here"
        pytest.skip(f"the image cannot be built here: {build.stderr.strip()}")
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    return TAG


@pytest.fixture(scope="module")
def podman(image: str) -> Podman:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    limits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]
    runtime = os.environ.get("PODMAN_RUNTIME")
    if runtime is None:
        probe = Podman([], limits)("run", "--rm", *limits, "--entrypoint", "true", image)
        runtime = "runc" if probe.returncode != 0 and shutil.which("runc") else ""
    return Podman(["--runtime", runtime] if runtime else [], limits)


@pytest.fixture
def name() -> Iterator[str]:
    name = f"turnout-test-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True)


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url}/ready never answered 200"
        time.sleep(0.2)


def test_the_container_serves_a_chat_completion_as_a_non_root_user(
    image: str, podman: Podman, name: str, image_env: dict[str, str], upstream: FakeOpenAI
) -> None:
    """On the host's network, so the container reaches the test's Redis and fake
    upstream on loopback; the image's command with only its port swapped."""
    port = free_port()
    command = image_command()[1:]  # the ENTRYPOINT is the image's own
    command[command.index("--port") + 1] = str(port)
    env = [arg for key, value in image_env.items() for arg in ("--env", f"{key}={value}")]
    podman.start(name, "--network", "host", *env, image, *command)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    upstream.reset()
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello from the container"}]
    )
    assert reply.choices[0].message.content == "echo: hello from the container"
    assert [r.body["model"] for r in upstream.requests] == ["gpt-4o-mini"]
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"


def test_the_image_command_is_healthy_and_drains_on_stop(
    image: str, podman: Podman, name: str
) -> None:
    """The image exactly as built (its CMD, port 8080 published), with nothing
    configured: mock/echo serves, /ready answers, the HEALTHCHECK passes, and
    ``podman stop`` drains: /ready turns 503 for --shutdown-delay, then exit 0."""
    port = free_port()
    podman.start(name, "--publish", f"127.0.0.1:{port}:{IMAGE_PORT}", image)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    check = podman("healthcheck", "run", name)
    assert check.returncode == 0, check.stdout + check.stderr
    health = podman("inspect", "--format", "{{.State.Health.Status}}", name)
    assert health.stdout.strip() == "healthy"

    delay = float(flag(image_command(), "--shutdown-delay"))
    stopped: list[subprocess.CompletedProcess[str]] = []
    started = time.monotonic()
    stopper = threading.Thread(
        target=lambda: stopped.append(podman("stop", "--time", "30", name, timeout=60))
    )
    stopper.start()
    deadline = time.monotonic() + delay
    while httpx.get(url + "/ready", timeout=2).status_code != 503:
        assert time.monotonic() < deadline, "/ready did not turn 503 on SIGTERM"
        time.sleep(0.1)
    assert httpx.get(url + "/health", timeout=2).status_code == 200  # still serving
    stopper.join(60)
    assert stopped and stopped[0].returncode == 0, stopped
    assert time.monotonic() - started >= delay - 0.5
    code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert code == "0"
