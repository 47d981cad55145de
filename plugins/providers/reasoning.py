"""OpenAI's ``reasoning_effort`` in the terms of vendors that have no such field.

Pure functions, shared by the Anthropic, Bedrock (Claude) and Gemini
translations, so one table says what each effort means everywhere:

- Claude models that take a thinking budget (3.7, 4, 4.1, 4.5, and any Claude
  this module does not know) get ``thinking: {type: enabled, budget_tokens}``
  with the budgets of ``CLAUDE_BUDGETS``; ``max_tokens`` is raised when it does
  not leave room for the budget (Anthropic requires ``budget_tokens <
  max_tokens``). Claude 4.6 and later (adaptive thinking; 4.7+ reject budgets)
  get ``thinking: {type: adaptive}`` and ``output_config.effort``. Claude 3 and
  3.5 cannot think: the effort is ignored.
- Gemini 2.5 gets ``thinkingConfig.thinkingBudget`` (``GEMINI_BUDGETS``);
  Gemini 3 and later get ``thinkingConfig.thinkingLevel``. Gemini before 2.5
  cannot think: the effort is ignored.

``none`` turns thinking off where the model allows it, else asks for the least.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CLAUDE_BUDGETS",
    "EFFORTS",
    "GEMINI_BUDGETS",
    "MIN_CLAUDE_BUDGET",
    "ClaudeThinking",
    "claude_in_bedrock_id",
    "claude_style",
    "claude_thinking",
    "gemini_thinking_config",
    "requested_effort",
]

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""The ``reasoning_effort`` values OpenAI defines."""

MIN_CLAUDE_BUDGET = 1024
"""Anthropic's smallest ``budget_tokens``."""

CLAUDE_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16_384, "xhigh": 24_576}
"""``budget_tokens`` per effort: a ceiling, billed only as used. ``xhigh``
stays under 32,000, the smallest output limit of a Claude that takes budgets."""

GEMINI_BUDGETS = {"minimal": 512, "low": 2048, "medium": 8192, "high": 16_384, "xhigh": 24_576}
"""``thinkingBudget`` per effort: every value is in range for 2.5 Pro
(128-32,768), Flash (0-24,576) and Flash-Lite (512-24,576)."""

ClaudeStyle = Literal["budget", "adaptive"]

# Claude families by model-name prefix (Anthropic's models overview). Unknown
# names take budgets, which every thinking Claude before 4.7 accepts.
_CLAUDE_NO_THINKING = (
    "claude-3-haiku", "claude-3-opus", "claude-3-sonnet", "claude-3-5-",
    "claude-2", "claude-v", "claude-instant",
)  # fmt: skip
_CLAUDE_ADAPTIVE = (
    "claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-4-8",
    "claude-mythos", "claude-sonnet-5", "claude-opus-5", "claude-haiku-5", "claude-fable-5",
)  # fmt: skip
_CLAUDE_XHIGH = ("claude-opus-4-7", "claude-opus-4-8", "claude-sonnet-5", "claude-opus-5")
_CLAUDE_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}

_BEDROCK_CLAUDE = re.compile(r"(?:^|[./])anthropic\.(?P<name>claude-[\w.-]*)")
_GEMINI_VERSION = re.compile(r"gemini-(?P<major>\d+)(?:\.(?P<minor>\d+))?")


def requested_effort(extra: dict[str, Any] | None) -> str | None:
    """The request's ``reasoning_effort`` (lower-cased), or None when it sets none.

    :param extra: the request's unknown fields (``ChatRequest.model_extra``).
    :raises ValueError: for a value OpenAI does not define; the message names them.
    """
    value = (extra or {}).get("reasoning_effort")
    if value is None:
        return None
    effort = value.lower() if isinstance(value, str) else None
    if effort not in EFFORTS:
        raise ValueError(f"reasoning_effort {value!r} is not one of {', '.join(EFFORTS)}")
    return effort


# --------------------------------------------------------------------------
# Claude (Anthropic Messages API, and Bedrock with Claude models)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaudeThinking:
    """What a Claude request carries for one effort."""

    thinking: dict[str, Any]
    """The ``thinking`` parameter."""
    effort: str | None
    """``output_config.effort`` (adaptive models only)."""
    max_tokens: int
    """``max_tokens`` to send: the caller's, raised when a budget needs room."""


def claude_in_bedrock_id(model_id: str) -> str | None:
    """The Claude model name in a Bedrock model ID, inference profile or ARN
    (``us.anthropic.claude-sonnet-4-20250514-v1:0`` → ``claude-sonnet-4-20250514-v1``)."""
    match = _BEDROCK_CLAUDE.search(model_id)
    return match["name"] if match else None


def claude_style(model: str) -> ClaudeStyle | None:
    """How ``model`` thinks: by budget, adaptively, or (None) not at all."""
    if model.startswith(_CLAUDE_NO_THINKING):
        return None
    return "adaptive" if model.startswith(_CLAUDE_ADAPTIVE) else "budget"


def claude_thinking(
    effort: str, model: str, *, max_tokens: int, model_limit: int | None = None
) -> ClaudeThinking | None:
    """The thinking parameters for ``effort`` on a Claude ``model``, or None for none.

    :param effort: a value of ``EFFORTS``.
    :param model: the Claude model name (``claude-sonnet-4-5``, ...).
    :param max_tokens: the ``max_tokens`` the request would send without thinking.
    :param model_limit: the model's largest output, if known; a raised
        ``max_tokens`` never passes it.

    A budget that ``max_tokens`` cannot hold gets ``max_tokens`` raised to
    budget + ``max_tokens`` (the caller's limit becomes room for the answer);
    the budget is always at least 1024 and below the ``max_tokens`` returned.
    """
    style = claude_style(model)
    if effort == "none" or style is None:
        return None
    if style == "adaptive":
        level = _CLAUDE_EFFORT.get(effort)
        if level is None:  # xhigh
            level = "xhigh" if model.startswith(_CLAUDE_XHIGH) else "high"
        return ClaudeThinking({"type": "adaptive"}, level, max_tokens)
    budget = CLAUDE_BUDGETS[effort]
    if max_tokens <= budget:
        max_tokens += budget
        if model_limit is not None:
            max_tokens = min(max_tokens, model_limit)
    budget = min(budget, max_tokens - 1)
    if budget < MIN_CLAUDE_BUDGET:
        return None
    return ClaudeThinking({"type": "enabled", "budget_tokens": budget}, None, max_tokens)


# --------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------


def gemini_thinking_config(effort: str, model: str) -> dict[str, Any] | None:
    """``generationConfig.thinkingConfig`` for ``effort`` on ``model``, or None.

    Gemini 2.5 takes a budget (``none`` is 0, except on 2.5 Pro, which cannot
    stop thinking and gets its least, 128); Gemini 3 and later take a level
    (Pro: ``low``/``high``, plus ``medium`` after 3.0; Flash also ``minimal``).
    A Gemini whose name has no version (``gemini-flash-latest``) gets a budget,
    which Gemini 3 also accepts. Thought summaries are asked for
    (``includeThoughts``) so they come back as ``reasoning_content``.
    """
    name = model.rsplit("/", 1)[-1]
    match = _GEMINI_VERSION.search(name)
    if match is None:
        if "gemini" not in name:
            return None
        version = (2, 5)
    else:
        version = (int(match["major"]), int(match["minor"] or 0))
    if version < (2, 5):
        return None
    pro = "-pro" in name
    if version < (3, 0):
        if effort == "none":
            return {"thinkingBudget": 128 if pro else 0}
        return {"thinkingBudget": GEMINI_BUDGETS[effort], "includeThoughts": True}
    if pro:
        levels = {"none": "low", "minimal": "low", "low": "low", "medium": "medium"}
        if version == (3, 0):
            levels["medium"] = "high"
    else:
        levels = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium"}
    config: dict[str, Any] = {"thinkingLevel": levels.get(effort, "high")}
    if effort != "none":
        config["includeThoughts"] = True
    return config
