"""Guardrails through the gateway: what reaches the upstream, and what is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import RunningGateway, start_gateway

POLICY = """\
version: 1
providers:
  fake: {{type: openai, base_url: "{fake}", api_key: test-key}}
defaults:
  guardrails: [pii, secrets]
routes:
  - {{name: guarded, match: {{model: guarded}}, targets: [fake/gpt-4o]}}
  - name: outbound
    match: {{model: outbound}}
    targets: [fake/gpt-4o]
    guardrails: [{{type: pii, on: output}}]
"""
AWS = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def guarded(tmp_path: Path, fake: FakeOpenAI) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY.format(fake=fake.base_url))
    running = start_gateway(path)
    yield running
    running.stop()


def test_an_email_and_a_card_number_reach_the_upstream_redacted(guarded, fake) -> None:
    text = "I am jane@example.com, card 4242 4242 4242 4242; jane@example.com again"
    response = guarded.client().chat.completions.create(
        model="guarded", messages=[{"role": "user", "content": text}]
    )
    [sent] = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    upstream_text = sent.body["messages"][0]["content"]
    assert upstream_text == "I am [EMAIL_1], card [CREDIT_CARD_1]; [EMAIL_1] again"
    assert response.choices[0].message.content == "echo: " + upstream_text
    assert (
        guarded.metric(
            "turnout_guardrail_actions_total",
            route="guarded",
            guardrail="pii",
            direction="input",
            action="redact",
        )
        >= 1
    )


def test_an_aws_secret_key_is_blocked_with_a_4xx_naming_the_guardrail(guarded, fake) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        guarded.client().chat.completions.create(
            model="guarded", messages=[{"role": "user", "content": f"why does {AWS} fail?"}]
        )
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error["code"] == "guardrail_blocked"
    assert "guardrail 'secrets'" in error["message"] and "AWS_SECRET_KEY" in error["message"]
    assert [r for r in fake.requests if r.path.endswith("/chat/completions")] == []


def test_a_streamed_reply_is_redacted_before_it_leaves_the_gateway(guarded, fake) -> None:
    # output only: the card goes upstream as is, and the fake echoes it back
    body = {
        "model": "outbound",
        "stream": True,
        "messages": [{"role": "user", "content": "4242 4242 4242 4242"}],
    }
    with httpx.stream("POST", guarded.url + "/v1/chat/completions", json=body) as response:
        raw = "".join(response.iter_text())
    [sent] = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    assert sent.body["messages"][0]["content"] == "4242 4242 4242 4242"
    assert "4242" not in raw and "[CREDIT_CARD_1]" in raw and raw.endswith("data: [DONE]\n\n")
