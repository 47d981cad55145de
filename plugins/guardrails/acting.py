"""Acting on what guardrails found: block, redact or log, and say where.

Every action is reported in ``ctx.scratch["guardrail"]`` (the request log
shows it) with the place it was found (``messages[2].tool_calls[0].function.arguments
(call call_1, function send_email)``), counted in ``turnout_guardrail_actions``,
and a block names that place in its error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter
from turnout.plugin_api import (
    ChatRequest,
    CompiledGuardrail,
    FailureClass,
    Finding,
    ProviderError,
    RequestContext,
    TurnoutError,
)
from turnout.plugins.guardrails.redact import Redactor, without_overlaps

__all__ = [
    "ACTIONS",
    "REPORT",
    "ActionCounter",
    "Held",
    "Place",
    "Redact",
    "State",
    "blocked",
    "call_place",
    "check_output",
    "failed",
    "report",
    "scan_text",
    "scan_thinking",
    "scan_value",
    "state_of",
    "text_place",
    "unredactable",
]

log = structlog.get_logger("turnout.guardrails")

SCRATCH = "turnout.plugins.guardrails"
REPORT = "guardrail"
"""``ctx.scratch["guardrail"]``: what guardrails did to this request (a list)."""


class ActionCounter:
    """One engine's ``turnout_guardrail_actions``, its label children memoised."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metric = Counter(
            "turnout_guardrail_actions",
            "Guardrail findings acted on, by route, guardrail, direction (input or output) "
            'and action ("block", "redact", "log", "retry", "fallback", or "error" when it '
            "failed).",
            ["route", "guardrail", "direction", "action"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, str, str], Any] = {}

    def inc(self, key: tuple[str, str, str, str]) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metric.labels(*key)
        child.inc()


ACTIONS = "turnout.plugins.guardrails.actions"
"""``ctx.scratch[ACTIONS]``: the engine's ``ActionCounter`` (set by its ``Guardrails``)."""


def count(ctx: RequestContext, rail: CompiledGuardrail, direction: str, action: str) -> None:
    actions: ActionCounter | None = ctx.scratch.get(ACTIONS)
    if actions is not None:
        actions.inc((ctx.route.name, rail.name, direction, action))


def report(
    ctx: RequestContext,
    rail: CompiledGuardrail,
    direction: str,
    action: str,
    what: list[str],
    where: str | None = None,
) -> None:
    entry: dict[str, Any] = {
        "guardrail": rail.name,
        "on": direction,
        "action": action,
        "found": what,
    }
    if where is not None:
        entry["where"] = where
    ctx.scratch.setdefault(REPORT, []).append(entry)
    count(ctx, rail, direction, action)
    if action in ("log", "retry", "fallback"):
        log.warning(
            "guardrail finding",
            request_id=ctx.request_id,
            route=ctx.route.name,
            **entry,
        )


def blocked(
    rail: CompiledGuardrail, direction: str, what: str, where: Place | None = None, why: str = ""
) -> TurnoutError:
    subject = "request" if direction == "input" else "response"
    param = None
    if where is not None:
        what = f"{what} in {where}{why}"
        param = where.path if direction == "input" else None
    elif direction == "input":
        param = "messages"
    return TurnoutError(
        f"the {subject} was blocked by guardrail {rail.name!r}: {what}",
        status_code=400,
        code="guardrail_blocked",
        param=param,
    )


def failed(
    ctx: RequestContext, rail: CompiledGuardrail, direction: str, exc: Exception
) -> TurnoutError:
    log.error(
        "guardrail raised",
        request_id=ctx.request_id,
        route=ctx.route.name,
        guardrail=rail.name,
        exc_info=exc,
    )
    count(ctx, rail, direction, "error")
    return TurnoutError(
        f"guardrail {rail.name!r} failed ({type(exc).__name__}), so the request was refused: "
        "guardrails fail closed",
        status_code=500,
        type="api_error",
        code="guardrail_error",
    )


def kinds_of(findings: list[Finding]) -> list[str]:
    return sorted({f.kind for f in findings})


@dataclass(frozen=True, slots=True)
class Place:
    """Where a finding was: a path in the request or response, and what is there."""

    path: str
    about: str = ""

    def __str__(self) -> str:
        return f"{self.path} ({self.about})" if self.about else self.path


@lru_cache(maxsize=512)
def text_place(where: str, index: int, what: str) -> Place:
    """``where[index].what``: built once, as every request scans its texts."""
    return Place(f"{where}[{index}].{what}")


def call_place(path: str, call: dict[str, Any], name: Any) -> Place:
    about = [f"call {call['id']}"] if call.get("id") else []
    if isinstance(name, str) and name:
        about.append(f"function {name}")
    return Place(path, ", ".join(about))


Redact = Callable[[str, list[Finding]], tuple[str, list[Finding]]]
"""``(text, findings) -> (redacted text, findings it could not redact)``."""


def unredactable(text: str, findings: list[Finding]) -> tuple[str, list[Finding]]:
    return text, findings


@dataclass(slots=True)
class Held:
    place: Place
    pending: str = ""
    parts: list[str] = field(default_factory=list)
    name: str = ""


@dataclass(slots=True)
class State:
    redactor: Redactor = field(default_factory=Redactor)
    held: dict[tuple[int, str], Held] = field(default_factory=dict)
    """Streamed text held back per choice and field (``content``, ``reasoning_content``, ...)."""
    beyond_content: bool = False
    """``held`` has a field other than ``content`` (most streams never do)."""
    calls: dict[tuple[int, int], Held] = field(default_factory=dict)


def state_of(ctx: RequestContext) -> State:
    state = ctx.scratch.get(SCRATCH)
    if state is None:
        state = ctx.scratch[SCRATCH] = State()
    return state


def scan_text(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    text: str,
    direction: str,
    place: Place,
    findings_of: dict[str, list[Finding]] | None = None,
    redact: Redact | None = None,
) -> str:
    """Run text guardrails over ``text``; block, or return it redacted as configured.

    ``redact`` rewrites the findings where plain replacement is not safe (tool-call
    arguments); a finding it cannot rewrite blocks instead.
    """
    redacting: list[tuple[CompiledGuardrail, list[Finding]]] = []
    for rail in rails:
        if findings_of is not None:
            found = findings_of.get(rail.name, [])
        else:
            try:
                found = rail.guardrail.scan(text)
            except Exception as exc:
                raise failed(ctx, rail, direction, exc) from exc
        if not found:
            continue
        if rail.action == "block":
            kinds = kinds_of(found)
            report(ctx, rail, direction, "block", kinds, str(place))
            raise blocked(rail, direction, f"found {', '.join(kinds)}", place)
        if rail.action == "redact":
            redacting.append((rail, found))
        else:
            report(ctx, rail, direction, "log", kinds_of(found), str(place))
    if not redacting:
        return text
    spans = without_overlaps(f for _, found in redacting for f in found)
    if redact is None:
        out = state_of(ctx).redactor.redact(text, spans)
    else:
        out, unsafe = redact(text, spans)
        if unsafe:
            rail = next(r for r, found in redacting if any(f in found for f in unsafe))
            kinds = kinds_of(unsafe)
            report(ctx, rail, direction, "block", kinds, str(place))
            why = ", where a placeholder would break the tool call"
            raise blocked(rail, direction, f"found {', '.join(kinds)}", place, why)
    for rail, found in redacting:
        report(ctx, rail, direction, "redact", kinds_of(found), str(place))
    return out


def scan_value(
    ctx: RequestContext, rails: list[CompiledGuardrail], value: Any, direction: str, path: str
) -> Any:
    """Scan every string in a JSON value (``metadata``, ``prediction``, a part's
    ``image_url``); the value with its strings redacted, or ``value`` itself
    when nothing changed."""
    if isinstance(value, str):
        return scan_text(ctx, rails, value, direction, Place(path)) if value else value
    if isinstance(value, dict):
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            out = scan_value(ctx, rails, item, direction, f"{path}.{key}" if path else str(key))
            if out is not item:
                changed = changed if changed is not None else dict(value)
                changed[key] = out
        return value if changed is None else changed
    if isinstance(value, list):
        items: list[Any] | None = None
        for k, item in enumerate(value):
            out = scan_value(ctx, rails, item, direction, f"{path}[{k}]")
            if out is not item:
                items = items if items is not None else list(value)
                items[k] = out
        return value if items is None else items
    return value


def check_output(
    ctx: RequestContext, rails: list[CompiledGuardrail], text: str, stream: bool
) -> None:
    """Run whole-output checks (``check_output``) over one choice's complete content."""
    request: ChatRequest = ctx.request
    for rail in rails:
        try:
            violation = rail.guardrail.check_output(text, request)
        except Exception as exc:
            raise failed(ctx, rail, "output", exc) from exc
        if violation is None:
            continue
        action = rail.action
        if action == "log":
            report(ctx, rail, "output", "log", [violation])
            continue
        if action in ("retry", "fallback") and not stream:
            report(ctx, rail, "output", action, [violation])
            raise ProviderError(
                FailureClass.SERVER_ERROR if action == "retry" else FailureClass.CONTENT_FILTER,
                f"guardrail {rail.name!r}: {violation}",
                code="guardrail_rejected_output",
            )
        report(ctx, rail, "output", "block", [violation])
        raise blocked(rail, "output", violation)


def _dropped(text: str, findings: list[Finding]) -> tuple[str, list[Finding]]:
    return "", []


def scan_thinking(
    ctx: RequestContext, rails: list[CompiledGuardrail], blocks: list[Any], path: str
) -> list[Any] | None:
    """Scan the text of signed thinking blocks (Anthropic's ``thinking_blocks``);
    the blocks to keep, or None when all stay.

    A block's signature covers its text, so no placeholder can go in it: a block
    with a finding to redact is dropped instead (its text is also the message's
    ``reasoning_content``, redacted there). A follow-up tool turn sent without
    the block runs without thinking, as it does for any OpenAI client.
    """
    kept: list[Any] | None = None
    for k, block in enumerate(blocks):
        text = block.get("thinking") if isinstance(block, dict) else None
        if isinstance(text, str) and text:
            place = Place(f"{path}.thinking_blocks[{k}].thinking")
            if scan_text(ctx, rails, text, "output", place, redact=_dropped) is not text:
                kept = list(blocks[:k]) if kept is None else kept
                continue
        if kept is not None:
            kept.append(block)
    return kept
