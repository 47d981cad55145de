"""Output guardrails beyond ``content``: the model's reasoning, refusals, the legacy
``function_call`` and Anthropic's thinking blocks, in responses and streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from turnout import ChatChunk, ChatResponse, TurnoutError, hookimpl
from turnout.contract.provider import Provider, ProviderCall

from tests.conftest import user
from tests.fakes.anthropic_upstream import FakeAnthropic

TOKEN = "ghp_" + "a1B2c3D4e5" * 4
"""A GitHub token shape the ``secrets`` guardrail blocks."""
PADDING = " ".join(f"step{i}" for i in range(30))
"""Thinking long enough that the window lets its start go out early."""


class ScriptedOptions(BaseModel):
    message: dict[str, Any] = {}
    deltas: list[dict[str, Any]] = []
    piece: int = 5


class Scripted(Provider):
    """Answers with ``options.message``; a stream sends ``options.deltas`` with each
    string field (and ``function_call.arguments``) cut ``piece`` characters a chunk,
    so a finding straddles chunk boundaries."""

    Options = ScriptedOptions
    free = True

    async def chat(self, call: ProviderCall) -> ChatResponse:
        message = {"role": "assistant", **self.settings.options.message}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return ChatResponse.model_validate({"id": "s", "model": call.model, "choices": [choice]})

    def _pieces(self) -> Iterator[dict[str, Any]]:
        piece = self.settings.options.piece
        for delta in self.settings.options.deltas:
            for name, value in delta.items():
                if name == "function_call":
                    yield {name: {"name": value["name"], "arguments": ""}}
                    value = value["arguments"]
                    for i in range(0, len(value), piece):
                        yield {name: {"arguments": value[i : i + piece]}}
                elif isinstance(value, str):
                    for i in range(0, len(value), piece):
                        yield {name: value[i : i + piece]}
                else:
                    yield {name: value}

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return ChatChunk.model_validate({"id": "s", "model": call.model, "choices": [choice]})

        yield chunk({"role": "assistant"})
        for delta in self._pieces():
            yield chunk(delta)
        yield chunk({}, finish="stop")


class ScriptedPlugin:
    @hookimpl
    def turnout_register_providers(self, register):
        register("scripted", Scripted)


def scripted(make_engine, guardrails: str, message=None, deltas=None):
    """An engine whose route ``s`` answers with ``message`` or streams ``deltas``."""
    options = {"message": message or {}, "deltas": deltas or []}
    return make_engine(
        f"""
        providers: {{s: {{type: scripted, options: {json.dumps(options)}}}}}
        routes: [{{name: s, match: {{model: s}}, targets: [s/m], guardrails: {guardrails}}}]
        """,
        plugins=[ScriptedPlugin()],
    )


async def streamed(engine, request) -> tuple[list[dict[str, Any]], TurnoutError | None]:
    """The deltas a stream sent (as JSON), and the error that ended it, if any."""
    sent: list[dict[str, Any]] = []
    try:
        async for chunk in engine.stream(request):
            sent += [c.delta.model_dump(mode="json") for c in chunk.choices]
    except TurnoutError as error:
        return sent, error
    return sent, None


def joined(deltas: list[dict[str, Any]], name: str) -> str:
    return "".join(d.get(name) or "" for d in deltas)


# -- reasoning -----------------------------------------------------------------


async def test_a_secret_in_the_reasoning_blocks_the_response(make_engine) -> None:
    thought = f"{PADDING} the deploy key is {TOKEN}, but I won't say it."
    message = {"content": "I can't share that.", "reasoning_content": thought}
    engine = scripted(make_engine, "[secrets]", message=message)
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("key?", model="s"))
    error = caught.value
    assert error.code == "guardrail_blocked"
    assert "GITHUB_TOKEN in choices[0].message.reasoning_content" in error.message
    assert TOKEN not in error.message


async def test_personal_data_in_the_reasoning_is_redacted_like_content(make_engine) -> None:
    message = {
        "content": "Write to bob@example.com.",
        "reasoning_content": "Bob is bob@example.com; his phone is +1 415-555-0132.",
        "reasoning": "OpenRouter's name for it: bob@example.com",
    }
    engine = scripted(make_engine, "[pii]", message=message)
    response = await engine.chat(user("who?", model="s"))
    out = response.choices[0].message
    assert out.reasoning_content == "Bob is [EMAIL_1]; his phone is [PHONE_1]."
    assert out.reasoning == "OpenRouter's name for it: [EMAIL_1]"
    assert out.content == "Write to [EMAIL_1]."


async def test_a_secret_split_across_streamed_reasoning_never_leaves(make_engine) -> None:
    deltas = [{"reasoning_content": f"{PADDING} the key is {TOKEN} so"}, {"content": "No."}]
    engine = scripted(make_engine, "[secrets]", deltas=deltas)
    sent, error = await streamed(engine, user("key?", model="s", stream=True))
    assert error is not None and error.code == "guardrail_blocked"
    assert "choices[0].delta.reasoning_content" in error.message
    reasoning = joined(sent, "reasoning_content")
    assert reasoning.startswith("step0 step1")  # the start went out while thinking went on
    assert "ghp_" not in reasoning
    assert not any(reasoning.endswith(TOKEN[:n]) for n in range(1, len(TOKEN)))
    assert joined(sent, "content") == ""  # blocked before the answer began


async def test_streamed_reasoning_is_redacted_and_complete_before_the_answer(
    make_engine,
) -> None:
    deltas = [{"reasoning_content": f"mail bob@example.com {PADDING}"}, {"content": "Done."}]
    engine = scripted(make_engine, "[pii]", deltas=deltas)
    sent, error = await streamed(engine, user("go", model="s", stream=True))
    assert error is None
    assert joined(sent, "reasoning_content") == f"mail [EMAIL_1] {PADDING}"
    first_answer = next(i for i, d in enumerate(sent) if d.get("content"))
    assert joined(sent[: first_answer + 1], "reasoning_content") == f"mail [EMAIL_1] {PADDING}"
    assert joined(sent, "content") == "Done."


# -- refusal -------------------------------------------------------------------


async def test_refusals_are_scanned(make_engine) -> None:
    engine = scripted(make_engine, "[pii]", message={"refusal": "I won't email bob@example.com."})
    response = await engine.chat(user("go", model="s"))
    assert response.choices[0].message.refusal == "I won't email [EMAIL_1]."

    deltas = [{"refusal": f"I won't use {TOKEN} for that."}]
    engine = scripted(make_engine, "[secrets]", deltas=deltas)
    sent, error = await streamed(engine, user("go", model="s", stream=True))
    assert error is not None and "choices[0].delta.refusal" in error.message
    assert "ghp" not in joined(sent, "refusal")


# -- legacy function_call --------------------------------------------------------


async def test_a_legacy_function_call_is_scanned_like_a_tool_call(make_engine) -> None:
    leaky = {"name": "deploy", "arguments": json.dumps({"token": TOKEN})}
    engine = scripted(make_engine, "[secrets]", message={"function_call": leaky})
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("go", model="s"))
    assert (
        "GITHUB_TOKEN in choices[0].message.function_call.arguments (function deploy)"
        in caught.value.message
    )

    personal = {"name": "send", "arguments": json.dumps({"to": "bob@example.com", "n": 1})}
    engine = scripted(make_engine, "[pii]", message={"function_call": personal})
    call = (await engine.chat(user("go", model="s"))).choices[0].message.function_call
    assert call["name"] == "send"
    assert json.loads(call["arguments"]) == {"to": "[EMAIL_1]", "n": 1}


async def test_a_streamed_legacy_function_call_is_held_back_like_a_tool_call(
    make_engine,
) -> None:
    def arguments(sent):
        return "".join((d.get("function_call") or {}).get("arguments") or "" for d in sent)

    leaky = {"name": "deploy", "arguments": json.dumps({"repo": "turnout", "token": TOKEN})}
    engine = scripted(make_engine, "[secrets]", deltas=[{"function_call": leaky}])
    sent, error = await streamed(engine, user("go", model="s", stream=True))
    assert error is not None and "choices[0].delta.function_call.arguments" in error.message
    assert "ghp_" not in arguments(sent)

    body = f"{PADDING} call +1 415-555-0132 {PADDING}"
    personal = {"name": "send", "arguments": json.dumps({"to": "bob@example.com", "body": body})}
    engine = scripted(make_engine, "[pii]", deltas=[{"function_call": personal}])
    sent, error = await streamed(engine, user("go", model="s", stream=True))
    assert error is None
    assert json.loads(arguments(sent)) == {
        "to": "[EMAIL_1]",
        "body": f"{PADDING} call [PHONE_1] {PADDING}",
    }
    assert [d["function_call"]["name"] for d in sent if "name" in d.get("function_call", {})] == [
        "send"
    ]


# -- through the Anthropic translation -------------------------------------------

THINKING = {"type": "enabled", "budget_tokens": 1024}
KEY = "sk-ant-api03-test-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as upstream:
        yield upstream


def claude(make_engine, fake: FakeAnthropic, guardrails: str):
    return make_engine(
        f"""
        providers: {{claude: {{type: anthropic, base_url: "{fake.base_url}", api_key: {KEY}}}}}
        routes:
          - {{name: c, match: {{model: c}}, targets: [claude/claude-sonnet-4-5],
              guardrails: {guardrails}}}
        """
    )


async def test_claude_thinking_is_scanned_through_the_translation(make_engine, fake) -> None:
    # output only, so the secret reaches the model and comes back in its thinking
    engine = claude(make_engine, fake, "[{type: secrets, on: output}]")
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user(f"use {TOKEN}", model="c", thinking=THINKING))
    assert "choices[0].message.reasoning_content" in caught.value.message

    asked = user(f"use {TOKEN}", model="c", thinking=THINKING, stream=True)
    sent, error = await streamed(engine, asked)
    assert error is not None and error.code == "guardrail_blocked"
    assert "ghp_" not in json.dumps(sent)  # not in reasoning, thinking blocks nor content


async def test_redacted_claude_thinking_drops_its_signed_block(make_engine, fake) -> None:
    engine = claude(make_engine, fake, "[{type: pii, on: output}]")
    asked = user("mail bob@example.com", model="c", thinking=THINKING)
    message = (await engine.chat(asked)).choices[0].message
    assert message.reasoning_content == "The user said mail [EMAIL_1]."
    assert message.content == "echo: mail [EMAIL_1]"
    assert message.thinking_blocks == []  # a placeholder would break its signature

    sent, error = await streamed(engine, {**asked, "stream": True})
    assert error is None
    assert joined(sent, "reasoning_content") == "The user said mail [EMAIL_1]."
    assert "bob@" not in json.dumps(sent)

    plain = await engine.chat(user("think", model="c", thinking=THINKING))
    assert plain.choices[0].message.thinking_blocks[0]["thinking"] == "The user said think."
