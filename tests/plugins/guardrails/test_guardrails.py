"""Guardrails through the engine: where they run, what each action does, and failing closed."""

from __future__ import annotations

import json

import pytest

from engine import Guardrail, PolicyError, TurnoutError, hookimpl
from engine.metrics import GUARDRAIL_ACTIONS
from tests.conftest import user

CARD = "4111 1111 1111 1111"
AWS = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
POLICY = """
providers:
  mock: {type: mock}
  leaky: {type: mock, options: {reply: "reach me at bob@example.com or 4111 1111 1111 1111"}}
  prose: {type: mock, options: {reply: "not json at all"}}
  good: {type: mock, options: {reply: '{"name": "x", "age": 3}'}}
defaults:
  guardrails: [pii, secrets]
routes:
  - {name: r, match: {model: r}, targets: [mock/echo]}
  - {name: leaky, match: {model: leaky}, targets: [leaky/a]}
  - name: logged
    match: {model: logged}
    targets: [mock/echo]
    guardrails: [{type: pii, action: log}]
  - name: strict
    match: {model: strict}
    targets: [mock/echo]
    guardrails:
      - {type: deny, keywords: [project zeus], patterns: ["(?i)internal[- ]only"]}
      - {type: limits, max_messages: 2, max_output_tokens: 100}
  - name: json
    match: {model: json}
    targets: [prose/a]
    fallbacks: [good/b]
    guardrails: [json_schema]
  - {name: open, match: {model: open}, targets: [mock/echo], guardrails: []}
"""

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def engine(make_engine):
    return make_engine(POLICY)


def count(route: str, rail: str, direction: str, action: str) -> float:
    return GUARDRAIL_ACTIONS.labels(route, rail, direction, action)._value.get()


async def test_personal_data_is_redacted_before_it_reaches_the_provider(engine) -> None:
    before = count("r", "pii", "input", "redact")
    response = await engine.chat(user(f"mail a@b.io, card {CARD}, again a@b.io", model="r"))
    # the mock echoes what it received
    assert response.choices[0].message.content == (
        "mail [EMAIL_1], card [CREDIT_CARD_1], again [EMAIL_1]"
    )
    assert count("r", "pii", "input", "redact") == before + 1


async def test_a_secret_blocks_the_request_naming_the_guardrail(engine) -> None:
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user(f"debug this: {AWS}", model="r"))
    error = caught.value
    assert error.status_code == 400 and error.code == "guardrail_blocked"
    assert "guardrail 'secrets'" in error.message and "AWS_SECRET_KEY" in error.message
    assert "wJalr" not in error.message


async def test_output_is_redacted_too(engine) -> None:
    response = await engine.chat(user("hi", model="leaky"))
    assert response.choices[0].message.content == "reach me at [EMAIL_1] or [CREDIT_CARD_1]"


async def test_a_streamed_output_is_redacted_before_it_leaves(engine) -> None:
    chunks = [c async for c in engine.stream(user("hi", model="leaky"))]
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == "reach me at [EMAIL_1] or [CREDIT_CARD_1]"
    assert not any("bob@" in d or "4111" in d for d in deltas)


async def test_a_long_stream_flows_while_the_window_holds_back_its_tail(make_engine) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    engine = make_engine(
        f"""
        providers: {{mock: {{type: mock, options: {{reply: "{words} a@b.io"}}}}}}
        routes: [{{name: r, match: {{model: r}}, targets: [mock/x], guardrails: [pii]}}]
        """
    )
    deltas = [
        c.choices[0].delta.content or ""
        async for c in engine.stream(user("x", model="r"))
        if c.choices
    ]
    assert "".join(deltas) == f"{words} [EMAIL_1]"
    assert sum(1 for d in deltas if d) > 2  # text went out before the end


async def test_log_only_lets_the_request_through_and_reports_it(engine) -> None:
    seen = []

    class Observer:
        @hookimpl
        def turnout_request_finished(self, ctx):
            seen.append(ctx.scratch.get("guardrail"))

    engine.plugin_manager.register(Observer())
    response = await engine.chat(user("mail a@b.io", model="logged"))
    assert response.choices[0].message.content == "mail a@b.io"
    assert seen == [
        [
            {"guardrail": "pii", "on": "input", "action": "log", "found": ["EMAIL"]},
            {"guardrail": "pii", "on": "output", "action": "log", "found": ["EMAIL"]},
        ]
    ]


async def test_deny_and_limits(engine) -> None:
    with pytest.raises(TurnoutError, match="guardrail 'deny'"):
        await engine.chat(user("tell me about Project Zeus", model="strict"))
    with pytest.raises(TurnoutError, match="guardrail 'deny'"):
        await engine.chat(user("this is INTERNAL-only", model="strict"))
    with pytest.raises(TurnoutError, match="guardrail 'limits': 3 messages"):
        await engine.chat({"model": "strict", "messages": [{"role": "user", "content": "x"}] * 3})
    with pytest.raises(TurnoutError, match="max_tokens 500 is more than max_output_tokens 100"):
        await engine.chat(user("x", model="strict", max_tokens=500))
    ok = await engine.chat(user("zeus alone is fine", model="strict", max_tokens=50))
    assert ok.choices[0].message.content == "zeus alone is fine"


async def test_json_schema_failure_falls_back_to_the_next_target(engine) -> None:
    response = await engine.chat(user("who", model="json", response_format=SCHEMA))
    assert json.loads(response.choices[0].message.content) == {"name": "x", "age": 3}
    trail = [(a.provider, a.outcome) for a in response.extra_fields.attempts]
    assert trail == [("prose", "content_filter"), ("good", "ok")]
    plain = await engine.chat(user("who", model="json"))  # no response_format: not checked
    assert plain.choices[0].message.content == "not json at all"


async def test_a_guardrail_that_raises_fails_closed(make_engine) -> None:
    class Broken(Guardrail):
        def scan(self, text):
            raise RuntimeError("detector crashed")

    class Plugin:
        @hookimpl
        def turnout_register_guardrails(self, register):
            register("broken", Broken)

    engine = make_engine(
        """
        providers: {mock: {type: mock}}
        routes: [{name: r, match: {model: r}, targets: [mock/x], guardrails: [broken]}]
        """,
        plugins=[Plugin()],
    )
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("hi", model="r"))
    assert caught.value.status_code == 500 and caught.value.code == "guardrail_error"
    assert "guardrail 'broken' failed" in caught.value.message
    assert "fail closed" in caught.value.message


async def test_a_route_can_turn_the_default_guardrails_off(engine) -> None:
    response = await engine.chat(user(f"card {CARD}", model="open"))
    assert CARD in response.choices[0].message.content


def test_guardrail_mistakes_name_their_line(make_engine) -> None:
    with pytest.raises(PolicyError) as caught:
        make_engine(
            """
            providers: {mock: {type: mock}}
            routes:
              - name: r
                match: {model: r}
                guardrails:
                  - piii
                  - {type: limits, action: redact, max_messages: 3}
                  - {type: deny, patterns: ["(unclosed"]}
                  - {type: pii, kinds: [dna]}
            """
        )
    text = str(caught.value)
    assert "routes.yaml:7:" in text and "unknown guardrail 'piii'" in text and "'pii'?" in text
    assert "routes.yaml:8:" in text and "guardrail 'limits' cannot redact" in text
    assert "routes.yaml:9:" in text and "invalid regex '(unclosed'" in text
    assert "routes.yaml:10:" in text and "kinds" in text
