"""Output guardrails on streams: each text field of a choice (``content``,
``reasoning_content``, ``refusal``), each tool call's arguments and the legacy
``function_call``'s are held back in their own buffer and released once a
guardrail has seen them (see ``plugin.py`` for the window).

A choice's reasoning is released in full when its answer starts (the first
delta with content, a refusal or a call), so a client shows the whole
thinking before the answer; a finding in it is acted on there.
"""

from __future__ import annotations

from typing import Any

from turnout.plugin_api import (
    ChatChunk,
    ChunkChoice,
    CompiledGuardrail,
    Delta,
    Finding,
    RequestContext,
)
from turnout.plugins.guardrails.acting import (
    Held,
    Place,
    State,
    call_place,
    check_output,
    failed,
    scan_text,
    scan_thinking,
    state_of,
    text_place,
    unredactable,
)
from turnout.plugins.guardrails.arguments import redact_arguments

__all__ = ["HOLD_BACK", "REASONING", "stream_chunk"]

HOLD_BACK = 64
"""Characters of streamed output held back for output guardrails."""

REASONING = ("reasoning_content", "reasoning")
"""Fields that carry a model's thinking as text: ``reasoning_content`` (Anthropic,
Gemini and Cohere translations, DeepSeek, vLLM) and ``reasoning`` (OpenRouter)."""

_NO_EXTRA: dict[str, Any] = {}


def _put(delta: Delta, name: str, value: Any) -> None:
    """Set a field of ``delta``, declared or extra (``reasoning_content``, ...)."""
    setattr(delta, name, value)


def _release(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    held: Held,
    final: bool,
    arguments: bool = False,
) -> str:
    """The part of ``held.pending`` that may go out now, guardrails applied."""
    pending = held.pending
    findings_of: dict[str, list[Finding]] = {}
    spans: list[Finding] = []
    for rail in rails:
        try:
            found = rail.guardrail.scan(pending)
        except Exception as exc:
            raise failed(ctx, rail, "output", exc) from exc
        findings_of[rail.name] = found
        spans += found
    if final:
        cut = len(pending)
    else:
        cut = len(pending) - HOLD_BACK
        if cut <= 0:
            return ""
        space = max(pending.rfind(" ", 0, cut), pending.rfind("\n", 0, cut))
        if space >= 0:
            cut = space + 1
        for span in sorted(spans, key=lambda f: f.start):
            if span.start < cut < span.end:
                cut = span.start
        if cut <= 0:
            return ""
    head = pending[:cut]
    held.pending = pending[cut:]
    head_findings = {
        name: [f for f in found if f.end <= cut] for name, found in findings_of.items()
    }
    redact = None
    if arguments:
        # what went out before ``head`` says where its string literals are
        sent = "".join(held.parts)
        sent = sent[: len(sent) - len(pending)]
        placeholder = state_of(ctx).redactor.placeholder

        def redact(text: str, findings: list[Finding]) -> tuple[str, list[Finding]]:
            return redact_arguments(
                sent + text, findings, placeholder, start=len(sent), complete=final
            )

    return scan_text(ctx, rails, head, "output", held.place, head_findings, redact)


def _text(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    state: State,
    index: int,
    name: str,
    text: Any,
    final: bool,
) -> str | None:
    """What of one streamed text field may go out with this chunk (None: leave it)."""
    key = (index, name)
    held = state.held.get(key)
    adding = isinstance(text, str) and bool(text)
    if held is None:
        if not adding:
            return None
        held = state.held[key] = Held(text_place("choices", index, f"delta.{name}"))
        state.beyond_content = True
    elif not adding and not held.pending:
        return None if text is None else ""
    if adding:
        held.pending += text
        held.parts.append(text)
    out = _release(ctx, rails, held, final)
    return out if text is not None or out else None


def _function(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    held: Held,
    function: dict[str, Any],
    here: str,
    final: bool,
) -> dict[str, Any]:
    """``function`` (a call's ``{"name", "arguments"}`` delta) as it may go out now."""
    name, arguments = function.get("name"), function.get("arguments")
    if isinstance(name, str) and name:
        # not held back: clients expect the name with a call's first delta
        held.name += name
        place = Place(f"{here}.name", held.place.about)
        scan_text(ctx, rails, held.name, "output", place, redact=unredactable)
    if isinstance(arguments, str) and arguments:
        held.pending += arguments
        held.parts.append(arguments)
    out = _release(ctx, rails, held, final, arguments=True)
    if arguments is not None or out:
        return {**function, "arguments": out}
    return function


def _calls(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    state: State,
    choice: ChunkChoice,
    final: bool,
) -> None:
    """Hold back and scan the tool-call arguments of one choice's delta, like its text."""
    delta = choice.delta
    seen = set()
    for call in delta.tool_calls or ():
        k = int(call.get("index", 0))
        seen.add(k)
        function = call.get("function")
        if not isinstance(function, dict):
            continue
        here = f"choices[{choice.index}].delta.tool_calls[{k}].function"
        held = state.calls.get((choice.index, k))
        if held is None:
            place = call_place(f"{here}.arguments", call, function.get("name"))
            held = state.calls[(choice.index, k)] = Held(place)
        call["function"] = _function(ctx, rails, held, function, here, final)
    if not final:
        return
    for (i, k), held in state.calls.items():
        if i == choice.index and k not in seen and held.pending:
            out = _release(ctx, rails, held, final, arguments=True)
            if out:
                tail = {"index": k, "function": {"arguments": out}}
                delta.tool_calls = [*(delta.tool_calls or ()), tail]


def _function_call(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    state: State,
    index: int,
    delta: Delta,
    final: bool,
) -> None:
    """The legacy ``function_call`` delta, held back like one tool call."""
    function = delta.__pydantic_extra__.get("function_call") if delta.__pydantic_extra__ else None
    key = (index, "function_call")
    held = state.held.get(key)
    if not isinstance(function, dict):
        if final and held is not None and held.pending:
            out = _release(ctx, rails, held, final, arguments=True)
            if out:
                _put(delta, "function_call", {"arguments": out})
        return
    here = f"choices[{index}].delta.function_call"
    if held is None:
        place = call_place(f"{here}.arguments", {}, function.get("name"))
        held = state.held[key] = Held(place)
        state.beyond_content = True
    _put(delta, "function_call", _function(ctx, rails, held, function, here, final))


def stream_chunk(ctx: RequestContext, rails: list[CompiledGuardrail], chunk: ChatChunk) -> None:
    """Apply output guardrails to ``chunk`` in place, holding text back as needed."""
    state = state_of(ctx)
    for choice in chunk.choices:
        index, delta = choice.index, choice.delta
        final = choice.finish_reason is not None
        extra = delta.__pydantic_extra__ or _NO_EXTRA
        if extra or delta.refusal is not None or state.beyond_content:
            answering = bool(delta.content or delta.refusal or delta.tool_calls)
            answering = answering or bool(extra.get("function_call"))
            for name in REASONING:
                text = extra.get(name)
                out = _text(ctx, rails, state, index, name, text, final or answering)
                if out is not None:
                    _put(delta, name, out)
            blocks = extra.get("thinking_blocks")
            if isinstance(blocks, list) and blocks:
                kept = scan_thinking(ctx, rails, blocks, f"choices[{index}].delta")
                if kept is not None:
                    _put(delta, "thinking_blocks", kept)
            if delta.refusal is not None or (index, "refusal") in state.held:
                out = _text(ctx, rails, state, index, "refusal", delta.refusal, final)
                if out is not None:
                    delta.refusal = out
        held = state.held.get((index, "content"))
        if held is None:
            place = text_place("choices", index, "delta.content")
            held = state.held[(index, "content")] = Held(place)
        if delta.content:
            held.pending += delta.content
            held.parts.append(delta.content)
        out = _release(ctx, rails, held, final)
        if delta.content is not None or out:
            delta.content = out
        if delta.tool_calls or (final and state.calls):
            _calls(ctx, rails, state, choice, final)
        if "function_call" in extra or (final and (index, "function_call") in state.held):
            _function_call(ctx, rails, state, index, delta, final)
        if final:
            check_output(ctx, rails, "".join(held.parts), stream=True)
