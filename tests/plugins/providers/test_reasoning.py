"""``reasoning_effort`` translated for Anthropic, Bedrock (Claude) and Gemini
(``turnout.plugins.providers.reasoning`` through each provider's wire module).

Anthropic bodies are checked with the fake upstream's validator, which rejects
what the Messages API rejects (budget below 1024 or not below ``max_tokens``,
temperature or top_k with thinking, thinking with a forced tool choice).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import anthropic_wire, bedrock_wire, gemini_wire
from turnout.plugins.providers.reasoning import CLAUDE_BUDGETS, EFFORTS, GEMINI_BUDGETS
from turnout.wire.chat import ChatRequest

from tests.fakes.anthropic_wire import validate_messages_request

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def request(**fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": HI, **fields})


def claude(model: str = "claude-sonnet-4-5", default: int = 4096, **fields: Any) -> dict:
    body = anthropic_wire.messages_body(request(**fields), model, max_tokens=default)
    validate_messages_request(body)  # what the real API would accept
    return body


# ---------------------------------------------------------------- Anthropic


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16_384), ("xhigh", 24_576)],
)
def test_each_effort_is_a_thinking_budget_on_budget_models(effort, budget):
    body = claude(reasoning_effort=effort, max_tokens=32_000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 32_000  # room enough: the caller's limit stands
    assert "output_config" not in body


def test_none_and_absent_effort_mean_no_thinking():
    assert "thinking" not in claude(reasoning_effort="none")
    assert "thinking" not in claude()


@pytest.mark.parametrize(
    ("effort", "max_tokens", "sent"),
    [("low", 1000, 3048), ("high", 16_384, 32_768), ("high", 16_385, 16_385)],
)
def test_max_tokens_is_raised_when_it_leaves_no_room_for_the_budget(effort, max_tokens, sent):
    body = claude(reasoning_effort=effort, max_tokens=max_tokens)
    assert body["max_tokens"] == sent
    assert body["thinking"]["budget_tokens"] < body["max_tokens"]


def test_a_raised_max_tokens_stops_at_the_models_output_limit():
    body = claude("claude-opus-4-1", reasoning_effort="xhigh", max_tokens=20_000)
    assert body["max_tokens"] == 32_000  # claude-opus-4-1's limit, not 44,576
    assert body["thinking"]["budget_tokens"] == 24_576


@pytest.mark.parametrize(
    ("model", "effort", "level"),
    [
        ("claude-opus-4-6", "minimal", "low"),
        ("claude-sonnet-4-6", "low", "low"),
        ("claude-opus-4-7", "medium", "medium"),
        ("claude-opus-4-7", "high", "high"),
        ("claude-opus-4-7", "xhigh", "xhigh"),
        ("claude-sonnet-4-6", "xhigh", "high"),  # 4.6 has no xhigh
    ],
)
def test_adaptive_models_get_adaptive_thinking_and_an_effort(model, effort, level):
    body = claude(model, reasoning_effort=effort, max_tokens=2000)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": level}
    assert body["max_tokens"] == 2000


def test_the_effort_joins_a_json_schema_output_format():
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    body = claude("claude-opus-4-7", reasoning_effort="low", response_format=fmt)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"}  # fmt: skip


@pytest.mark.parametrize("model", ["claude-3-5-sonnet-latest", "claude-3-haiku-20240307"])
def test_models_that_cannot_think_ignore_the_effort(model):
    body = claude(model, reasoning_effort="high", temperature=0.2)
    assert "thinking" not in body and body["temperature"] == 0.2


def test_with_thinking_temperature_and_top_k_are_dropped_and_a_low_top_p():
    body = claude(reasoning_effort="low", temperature=0.2, top_p=0.5, top_k=5)
    assert not {"temperature", "top_p", "top_k"} & set(body)
    assert claude(reasoning_effort="low", top_p=0.97)["top_p"] == 0.97
    assert claude(temperature=0.2, top_k=5)["temperature"] == 0.2  # no thinking: kept


def test_a_thinking_the_caller_sent_wins_over_the_effort():
    thinking = {"type": "enabled", "budget_tokens": 3000}
    body = claude(reasoning_effort="high", thinking=thinking, max_tokens=5000, temperature=0.3)
    assert body["thinking"] == thinking and body["max_tokens"] == 5000
    assert "temperature" not in body


def test_no_thinking_where_anthropic_would_refuse_it():
    forced = claude(reasoning_effort="high", tools=[WEATHER], tool_choice="required")
    assert "thinking" not in forced
    call = {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    loop = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
    ]
    assert "thinking" not in claude(reasoning_effort="high", tools=[WEATHER], messages=loop)
    signed = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    loop[1] = {**loop[1], "thinking_blocks": [signed]}
    assert "thinking" in claude(reasoning_effort="high", tools=[WEATHER], messages=loop)


@pytest.mark.parametrize("effort", ["extreme", "", 3])
def test_an_unknown_effort_is_a_bad_request(effort):
    with pytest.raises(ProviderError) as caught:
        claude(reasoning_effort=effort)
    assert caught.value.failure is FailureClass.BAD_REQUEST
    assert "reasoning_effort" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(
    effort=st.sampled_from(EFFORTS),
    model=st.sampled_from(
        ["claude-sonnet-4-5", "claude-opus-4-1", "claude-3-7-sonnet-latest", "claude-next"]
    ),
    max_tokens=st.none() | st.integers(1, 40_000),
    default=st.integers(1, 64_000),
    temperature=st.none() | st.floats(0, 1),
    stream=st.booleans(),
)
def test_thinking_budgets_always_fit(effort, model, max_tokens, default, temperature, stream):
    fields = {"reasoning_effort": effort, "max_tokens": max_tokens, "temperature": temperature}
    body = anthropic_wire.messages_body(request(**fields), model, max_tokens=default, stream=stream)
    validate_messages_request(body)
    asked = max_tokens or default
    if effort == "none":
        assert "thinking" not in body and body["max_tokens"] == asked
        return
    budget = body["thinking"]["budget_tokens"]
    assert 1024 <= budget <= CLAUDE_BUDGETS[effort] and budget < body["max_tokens"]
    assert body["max_tokens"] >= asked
    limit = anthropic_wire.model_output_limit(model)
    if body["max_tokens"] > asked:  # raised: only when needed, never past the model
        assert asked <= CLAUDE_BUDGETS[effort]
        assert limit is None or body["max_tokens"] <= limit
    assert "temperature" not in body


# ---------------------------------------------------------------- Bedrock (Claude)


def converse(model: str, **fields: Any) -> dict:
    return bedrock_wire.to_converse(request(**fields), model=model)


def test_bedrock_claude_thinks_in_additional_model_request_fields():
    body = converse("us.anthropic.claude-sonnet-4-20250514-v1:0", reasoning_effort="medium",
                    max_tokens=1000, temperature=0.4)  # fmt: skip
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 8192}
    }
    assert body["inferenceConfig"] == {"maxTokens": 9192}
    adaptive = converse("global.anthropic.claude-opus-4-6-v1", reasoning_effort="high")
    assert adaptive["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
    }
    assert "inferenceConfig" not in adaptive


@pytest.mark.parametrize(
    "model", ["anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.nova-pro-v1:0"]
)
def test_bedrock_models_that_cannot_think_ignore_the_effort(model):
    body = converse(model, reasoning_effort="high", temperature=0.4)
    assert "additionalModelRequestFields" not in body
    assert body["inferenceConfig"] == {"temperature": 0.4}


def test_bedrock_leaves_thinking_off_when_answering_tool_calls():
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    loop = [
        *HI,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "t1", "content": "done"},
    ]
    body = converse("anthropic.claude-sonnet-4-5-v1:0", reasoning_effort="low", messages=loop)
    assert "additionalModelRequestFields" not in body


# ---------------------------------------------------------------- Gemini


def thinking_config(model: str, **fields: Any) -> dict | None:
    return gemini_wire.generation_config(request(**fields), model).get("thinkingConfig")


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high", "xhigh"])
@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"])
def test_gemini_2_5_gets_a_thinking_budget(model, effort):
    assert thinking_config(model, reasoning_effort=effort) == {
        "thinkingBudget": GEMINI_BUDGETS[effort],
        "includeThoughts": True,
    }


@pytest.mark.parametrize(
    ("model", "budget"),
    [("gemini-2.5-flash", 0), ("gemini-2.5-flash-lite", 0), ("gemini-2.5-pro", 128)],
)
def test_gemini_2_5_none_thinks_as_little_as_the_model_allows(model, budget):
    assert thinking_config(model, reasoning_effort="none") == {"thinkingBudget": budget}


@pytest.mark.parametrize(
    ("model", "levels"),
    [
        ("gemini-3-flash-preview", ["minimal", "minimal", "low", "medium", "high", "high"]),
        ("gemini-3-pro-preview", ["low", "low", "low", "high", "high", "high"]),
        ("gemini-3.1-pro-preview", ["low", "low", "low", "medium", "high", "high"]),
    ],
)
def test_gemini_3_gets_a_thinking_level(model, levels):
    for effort, level in zip(EFFORTS, levels, strict=True):
        config = thinking_config(model, reasoning_effort=effort)
        assert config is not None and config["thinkingLevel"] == level
        assert config.get("includeThoughts") is (None if effort == "none" else True)


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "gemini-1.5-pro", "gemma-3-27b-it"])
def test_gemini_models_that_cannot_think_ignore_the_effort(model):
    assert thinking_config(model, reasoning_effort="high") is None


def test_gemini_without_an_effort_sends_no_thinking_config_and_refuses_an_unknown_one():
    assert thinking_config("gemini-2.5-flash") is None
    with pytest.raises(gemini_wire.TranslationError, match="reasoning_effort"):
        thinking_config("gemini-2.5-flash", reasoning_effort="max")
