"""The image's Dockerfile, and its command line run from a fresh venv (see conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai

from tests.deploy.conftest import (
    DEPLOY,
    IMAGE_PORT,
    ImageGateway,
    dockerfile,
    flag,
    healthcheck_command,
    image_command,
    last,
    policy_folder,
    start_image,
)
from tests.fakes.faults import Fault
from tests.fakes.openai_upstream import FakeOpenAI


def test_the_image_is_slim_and_runs_as_a_non_root_user() -> None:
    defaults = dict(
        rest.split("=", 1) for key, rest in dockerfile() if key == "ARG" and "=" in rest
    )
    bases = [rest.split()[0] for key, rest in dockerfile() if key == "FROM"]
    bases = [defaults[b[2:-1]] if b.startswith("${") else b for b in bases]
    assert bases and all(base.endswith("-slim") for base in bases)
    user = last("USER").split(":")[0]
    assert user not in ("root", "0")
    assert "useradd" in " ".join(rest for key, rest in dockerfile() if key == "RUN")
    assert last("EXPOSE") == IMAGE_PORT


def test_the_healthcheck_asks_ready_on_the_served_port() -> None:
    command = healthcheck_command()
    assert f"127.0.0.1:{IMAGE_PORT}/ready" in " ".join(command)
    serve = image_command()
    assert serve[:2] == ["turnout", "serve"]
    assert flag(serve, "--port") == IMAGE_PORT
    assert flag(serve, "--host") == "0.0.0.0"  # reachable from outside the container
    assert float(flag(serve, "--shutdown-delay")) > 0


def test_the_dockerignore_lets_through_everything_the_image_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {
        source.rstrip("/")
        for key, rest in dockerfile()
        if key == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert copied <= allowed


def test_the_image_command_serves_the_shipped_policy(
    image_gateway: ImageGateway, upstream: FakeOpenAI
) -> None:
    upstream.reset()
    client = openai.OpenAI(base_url=image_gateway.url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello from the image"}]
    )
    assert reply.choices[0].message.content == "echo: hello from the image"
    assert [r.body["model"] for r in upstream.requests] == ["gpt-4o-mini"]
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test"


def test_the_healthcheck_command_passes_on_a_ready_gateway(image_gateway: ImageGateway) -> None:
    command = [
        arg.replace(f":{IMAGE_PORT}/", f":{image_gateway.port}/") for arg in healthcheck_command()
    ]
    command[0] = str(image_gateway.venv / "bin" / command[0])
    assert subprocess.run(command, timeout=10).returncode == 0


def test_the_healthcheck_command_fails_when_nothing_answers(image_gateway: ImageGateway) -> None:
    command = [arg.replace(f":{IMAGE_PORT}/", ":9/") for arg in healthcheck_command()]
    command[0] = str(image_gateway.venv / "bin" / command[0])
    result = subprocess.run(command, timeout=10, capture_output=True)
    assert result.returncode != 0


def test_an_edited_policy_is_reloaded_without_a_restart(image_gateway: ImageGateway) -> None:
    """What a ConfigMap update (or an edit under compose) does: the file changes."""
    text = image_gateway.policy.read_text()
    edited = text.replace(
        "match: {model: [chat, gpt-4o-mini]}", "match: {model: [chat, gpt-4o-mini, talk]}"
    )
    assert edited != text
    swap = image_gateway.policy.with_suffix(".new")
    swap.write_text(edited)
    os.replace(swap, image_gateway.policy)  # a new inode, as the kubelet's swap makes
    client = openai.OpenAI(base_url=image_gateway.url + "/v1", api_key="unused", max_retries=0)
    deadline = time.monotonic() + 15
    while True:
        try:
            reply = client.chat.completions.create(
                model="talk", messages=[{"role": "user", "content": "reloaded"}]
            )
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline, "the edited policy was not picked up"
            time.sleep(0.2)
    assert reply.choices[0].message.content == "echo: reloaded"
    assert image_gateway.proc.poll() is None


def test_sigterm_drains_within_the_grace_period(
    image_venv: Path, image_env: dict[str, str], tmp_path: Path, upstream: FakeOpenAI
) -> None:
    """SIGTERM: /ready turns 503 at once while requests are still served for
    --shutdown-delay; an in-flight request finishes; the process exits 0
    within the grace period the manifests give it (a clean exit: 0, or the
    re-raised SIGTERM)."""
    gateway = start_image(image_venv, policy_folder(tmp_path), image_env)
    try:
        delay = float(flag(gateway.command, "--shutdown-delay"))
        drain = float(flag(gateway.command, "--drain-timeout"))
        upstream.reset()
        upstream.script(Fault.delay(1.0))
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
        answers: list[str | None] = []
        slow = threading.Thread(
            target=lambda: answers.append(
                client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "in flight"}]
                )
                .choices[0]
                .message.content
            )
        )
        slow.start()
        while not upstream.requests:
            time.sleep(0.01)
        started = time.monotonic()
        gateway.proc.terminate()
        time.sleep(0.3)
        assert httpx.get(gateway.url + "/ready", timeout=2).status_code == 503
        assert httpx.get(gateway.url + "/health", timeout=2).status_code == 200
        during = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "during the delay"}]
        )
        assert during.choices[0].message.content == "echo: during the delay"
        # uvicorn re-raises the signal once it has shut down cleanly
        assert gateway.proc.wait(delay + drain + 5) in (0, -signal.SIGTERM)
        assert time.monotonic() - started >= delay - 0.5
        slow.join(5)
        assert answers == ["echo: in flight"]
    finally:
        gateway.stop()


def test_docs_deploy_quotes_the_image_command() -> None:
    doc = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    assert f"`{' '.join(image_command())}`" in doc
