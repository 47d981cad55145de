"""Guardrails through the engine: where they run, what each action does, and failing closed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from turnout import ChatChunk, ChatResponse, Guardrail, PolicyError, TurnoutError, hookimpl
from turnout.contract.provider import Provider, ProviderCall

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


def count(engine, route: str, rail: str, direction: str, action: str) -> float:
    labels = {"route": route, "guardrail": rail, "direction": direction, "action": action}
    return engine.metrics.get_sample_value("turnout_guardrail_actions_total", labels) or 0.0


async def test_personal_data_is_redacted_before_it_reaches_the_provider(engine) -> None:
    before = count(engine, "r", "pii", "input", "redact")
    response = await engine.chat(user(f"mail a@b.io, card {CARD}, again a@b.io", model="r"))
    # the mock echoes what it received
    assert response.choices[0].message.content == (
        "mail [EMAIL_1], card [CREDIT_CARD_1], again [EMAIL_1]"
    )
    assert count(engine, "r", "pii", "input", "redact") == before + 1


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
            {
                "guardrail": "pii",
                "on": "input",
                "action": "log",
                "found": ["EMAIL"],
                "where": "messages[0].content",
            },
            {
                "guardrail": "pii",
                "on": "output",
                "action": "log",
                "found": ["EMAIL"],
                "where": "choices[0].message.content",
            },
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


# -- tool calls ------------------------------------------------------------------

TOKEN = "ghp_" + "a1B2c3D4e5" * 4
"""A GitHub token shape the ``secrets`` guardrail blocks."""


class ToolCallerOptions(BaseModel):
    calls: list[dict[str, Any]]
    piece: int = 5


class ToolCaller(Provider):
    """Answers with ``options.calls`` as tool calls; a stream sends the arguments
    ``piece`` characters a chunk, so findings straddle chunk boundaries."""

    Options = ToolCallerOptions
    free = True

    def _calls(self) -> list[dict[str, Any]]:
        return [
            {"id": f"call_{k}", "type": "function", "function": dict(call)}
            for k, call in enumerate(self.settings.options.calls)
        ]

    async def chat(self, call: ProviderCall) -> ChatResponse:
        message = {"role": "assistant", "content": None, "tool_calls": self._calls()}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return ChatResponse.model_validate({"id": "t", "model": call.model, "choices": [choice]})

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return ChatChunk.model_validate({"id": "t", "model": call.model, "choices": [choice]})

        yield chunk({"role": "assistant"})
        piece = self.settings.options.piece
        for k, tool_call in enumerate(self._calls()):
            arguments = tool_call["function"]["arguments"]
            first = {
                **tool_call,
                "index": k,
                "function": {**tool_call["function"], "arguments": ""},
            }
            yield chunk({"tool_calls": [first]})
            for i in range(0, len(arguments), piece):
                fragment = {"index": k, "function": {"arguments": arguments[i : i + piece]}}
                yield chunk({"tool_calls": [fragment]})
        yield chunk({}, finish="tool_calls")


class ToolCallerPlugin:
    @hookimpl
    def turnout_register_providers(self, register):
        register("tool_caller", ToolCaller)


def tool_engine(make_engine, guardrails: str, *calls: tuple[str, Any]):
    """An engine whose route ``t`` answers with the tool calls ``(name, arguments)``."""
    options = {
        "calls": [
            {"name": name, "arguments": a if isinstance(a, str) else json.dumps(a)}
            for name, a in calls
        ]
    }
    return make_engine(
        f"""
        providers: {{tools: {{type: tool_caller, options: {json.dumps(options)}}}}}
        routes: [{{name: t, match: {{model: t}}, targets: [tools/m], guardrails: {guardrails}}}]
        """,
        plugins=[ToolCallerPlugin()],
    )


async def streamed_calls(engine, request) -> tuple[dict[int, str], TurnoutError | None]:
    """The arguments a stream sent per tool call, and the error that ended it, if any."""
    sent: dict[int, str] = {}
    try:
        async for chunk in engine.stream(request):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or ():
                    fragment = call.get("function", {}).get("arguments") or ""
                    sent[call["index"]] = sent.get(call["index"], "") + fragment
    except TurnoutError as error:
        return sent, error
    return sent, None


async def test_a_secret_in_tool_call_arguments_blocks_the_response(make_engine) -> None:
    engine = tool_engine(make_engine, "[secrets]", ("deploy", {"token": TOKEN}))
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("go", model="t"))
    error = caught.value
    assert error.status_code == 400 and error.code == "guardrail_blocked"
    assert "GITHUB_TOKEN in choices[0].message.tool_calls[0].function.arguments" in error.message
    assert "(call call_0, function deploy)" in error.message
    assert TOKEN not in error.message


async def test_personal_data_in_tool_call_arguments_is_redacted_as_valid_json(
    make_engine,
) -> None:
    arguments = {"to": "bob@example.com", "card": 4111111111111111, "note": "mail bob@example.com"}
    engine = tool_engine(make_engine, "[pii]", ("send", arguments), ("noop", "{}"))
    response = await engine.chat(user("write to bob@example.com", model="t"))
    [call, noop] = response.choices[0].message.tool_calls
    assert json.loads(call["function"]["arguments"]) == {
        "to": "[EMAIL_1]",  # the same placeholder as in the input
        "card": "[CREDIT_CARD_1]",
        "note": "mail [EMAIL_1]",
    }
    assert call["function"]["name"] == "send" and call["id"] == "call_0"
    assert noop["function"]["arguments"] == "{}"


async def test_a_secret_split_across_streamed_argument_chunks_never_leaves(make_engine) -> None:
    arguments = {"repo": "turnout", "token": TOKEN, "ref": "main"}
    engine = tool_engine(make_engine, "[secrets]", ("deploy", arguments))
    sent, error = await streamed_calls(engine, user("go", model="t", stream=True))
    assert error is not None and error.code == "guardrail_blocked"
    assert "choices[0].delta.tool_calls[0].function.arguments" in error.message
    assert "ghp_" not in sent.get(0, "")


async def test_streamed_arguments_are_redacted_and_still_parse(make_engine) -> None:
    padding = "x" * 100  # long enough that the start goes out before the end
    arguments = {"to": "bob@example.com", "body": f"{padding} call +1 415-555-0132 {padding}"}
    engine = tool_engine(make_engine, "[pii]", ("send", arguments), ("noop", {"to": "a@b.io"}))
    sent, error = await streamed_calls(engine, user("go", model="t", stream=True))
    assert error is None
    assert json.loads(sent[0]) == {"to": "[EMAIL_1]", "body": f"{padding} call [PHONE_1] {padding}"}
    assert json.loads(sent[1]) == {"to": "[EMAIL_2]"}


async def test_a_finding_a_placeholder_cannot_replace_blocks_instead(make_engine) -> None:
    # a pattern over a key and its value: no placeholder keeps the JSON an object
    deny = """[{type: deny, action: redact, patterns: ['"password": "[^"]*"']}]"""
    engine = tool_engine(make_engine, deny, ("login", {"password": "hunter2"}))
    with pytest.raises(TurnoutError, match="where a placeholder would break the tool call"):
        await engine.chat(user("go", model="t"))
    # nor can a function name be renamed
    named = tool_engine(
        make_engine, "[{type: deny, keywords: [rm-rf], action: redact}]", ("rm-rf", "{}")
    )
    with pytest.raises(TurnoutError, match=r"tool_calls\[0\]\.function\.name"):
        await named.chat(user("go", model="t"))
    _, error = await streamed_calls(named, user("go", model="t", stream=True))
    assert error is not None and "function.name" in error.message


def history(arguments: str, result: str) -> dict[str, Any]:
    """A request whose history holds a tool call and its result."""
    call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "lookup", "arguments": arguments},
    }
    return {
        "model": "r",
        "messages": [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_9", "content": result},
            {"role": "user", "content": "thanks"},
        ],
    }


async def test_tool_calls_and_results_in_the_request_history_are_scanned(engine) -> None:
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(history(json.dumps({"key": TOKEN}), "ok"))
    assert "messages[1].tool_calls[0].function.arguments" in caught.value.message
    assert "(call call_9, function lookup)" in caught.value.message
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(history("{}", f"found {TOKEN}"))
    assert "messages[2].content (result of call call_9)" in caught.value.message

    seen = []

    class Observer:
        @hookimpl
        def turnout_request_finished(self, ctx):
            seen.append(ctx.request)

    engine.plugin_manager.register(Observer())
    await engine.chat(history(json.dumps({"email": "a@b.io"}), "a@b.io is on file"))
    [request] = seen
    arguments = request.messages[1].tool_calls[0]["function"]["arguments"]
    assert json.loads(arguments) == {"email": "[EMAIL_1]"}
    assert request.messages[2].content == "[EMAIL_1] is on file"


def test_a_deny_pattern_re2_cannot_run_names_its_line(make_engine) -> None:
    with pytest.raises(PolicyError) as caught:
        make_engine(
            """
            providers: {mock: {type: mock}}
            routes:
              - name: r
                match: {model: r}
                guardrails:
                  - {type: deny, patterns: ["(?<!not )secret"]}
            """
        )
    text = str(caught.value)
    assert "routes.yaml:7:" in text and "is not an RE2 regex" in text and "lookarounds" in text
