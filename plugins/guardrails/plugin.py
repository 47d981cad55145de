"""Running a route's guardrails: on input before any upstream call, on output
before the caller sees it, and on streams with a hold-back window.

Each guardrail of ``ctx.route.guardrails`` (compiled from routes.yaml) runs
where its ``on`` says, and its findings get the route's action:

- ``block``: the request fails with 400 ``guardrail_blocked`` naming the
  guardrail and what it found (never the value itself);
- ``redact``: each finding becomes a stable placeholder (``[EMAIL_1]``) and
  the request goes on;
- ``log``: the request goes on untouched; the finding is logged and counted;
- ``retry`` / ``fallback`` (output checks such as ``json_schema``): the attempt
  counts as failed, and the route retries it or moves to the next target.

Guardrails fail closed: one that raises fails the request with a 500
``guardrail_error`` that says so. What happened is in ``ctx.scratch["guardrail"]``
(the request log shows it) and in ``turnout_guardrail_actions``.

Streams: output text is held back until it is ``HOLD_BACK`` characters behind
the newest text (and at a word boundary, and never inside something a
guardrail found), so a finding is redacted — or the stream ended with an
error event — before its bytes leave the gateway. A finding longer than the
window can start leaking before it is complete; whole-output checks
(``json_schema``) run at the end, when the text has gone out, so their
failure ends the stream with an error event. Held text goes out with the
chunk that carries the choice's ``finish_reason``.

Tool calls are scanned like text: the arguments (and names) of the calls in
a response and in the request's assistant history, the results in ``tool``
messages, and streamed arguments, held back per call like streamed text.
Redacting arguments keeps their JSON valid (``arguments.py``); a finding a
placeholder cannot replace safely (a function name, or one spanning JSON
structure) is blocked instead. Names are not held back on streams.
"""

from __future__ import annotations

from typing import Any

from engine import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FailureClass,
    Finding,
    ProviderError,
    RequestContext,
    hookimpl,
)
from engine.guardrail import CompiledGuardrail
from engine.hookspecs import RegisterGuardrail
from engine.schema import ChunkChoice

from .acting import (
    Held,
    Place,
    Redact,
    State,
    blocked,
    call_place,
    failed,
    report,
    scan_text,
    state_of,
    text_place,
    unredactable,
)
from .arguments import redact_arguments
from .deny import Deny
from .json_schema import JsonSchema
from .limits import Limits
from .pii import Pii
from .secrets import Secrets

__all__ = [
    "HOLD_BACK",
    "turnout_post_response",
    "turnout_pre_request",
    "turnout_register_guardrails",
    "turnout_stream_chunk",
]

HOLD_BACK = 64
"""Characters of streamed output held back for output guardrails."""

BUILT_INS = {
    "pii": Pii,
    "secrets": Secrets,
    "deny": Deny,
    "limits": Limits,
    "json_schema": JsonSchema,
}


@hookimpl
def turnout_register_guardrails(register: RegisterGuardrail) -> None:
    for name, cls in BUILT_INS.items():
        register(name, cls)


def _arguments_redactor(ctx: RequestContext) -> Redact:
    placeholder = state_of(ctx).redactor.placeholder

    def redact(text: str, findings: list[Finding]) -> tuple[str, list[Finding]]:
        return redact_arguments(text, findings, placeholder)

    return redact


def _scan_calls(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    calls: list[dict[str, Any]],
    direction: str,
    path: str,
) -> list[dict[str, Any]] | None:
    """Scan the names and arguments of complete tool calls; the calls redacted, or None."""
    changed: list[dict[str, Any]] | None = None
    for k, call in enumerate(calls):
        function = call.get("function")
        if not isinstance(function, dict):
            continue
        name, arguments = function.get("name"), function.get("arguments")
        here = f"{path}.tool_calls[{k}].function"
        if isinstance(name, str) and name:
            place = call_place(f"{here}.name", call, name)
            scan_text(ctx, rails, name, direction, place, redact=unredactable)
        if isinstance(arguments, str) and arguments:
            place = call_place(f"{here}.arguments", call, name)
            redact = _arguments_redactor(ctx)
            out = scan_text(ctx, rails, arguments, direction, place, redact=redact)
            if out is not arguments:
                changed = changed or list(calls)
                changed[k] = {**call, "function": {**function, "arguments": out}}
    return changed


# -- input ---------------------------------------------------------------------


@hookimpl(tryfirst=True)
def turnout_pre_request(ctx: RequestContext) -> None:
    rails = [r for r in ctx.route.guardrails if r.input]
    if not rails:
        return
    request = ctx.request
    for rail in rails:
        try:
            violation = rail.guardrail.check_request(request)
        except Exception as exc:
            raise failed(ctx, rail, "input", exc) from exc
        if violation is not None:
            report(ctx, rail, "input", "block" if rail.action == "block" else "log", [violation])
            if rail.action == "block":
                raise blocked(rail, "input", violation)
    changed = False
    messages = []
    for i, message in enumerate(request.messages):
        content = message.content
        about = f"result of call {message.tool_call_id}" if message.tool_call_id else ""
        update: dict[str, Any] = {}
        if isinstance(content, str):
            place = (
                Place(f"messages[{i}].content", about)
                if about
                else text_place("messages", i, "content")
            )
            new = scan_text(ctx, rails, content, "input", place)
            if new is not content:
                update["content"] = new
        elif content:
            parts = []
            for j, part in enumerate(content):
                text = part.get("text")
                if isinstance(text, str):
                    place = Place(f"messages[{i}].content[{j}].text", about)
                    redacted = scan_text(ctx, rails, text, "input", place)
                    if redacted is not text:
                        part = {**part, "text": redacted}
                parts.append(part)
            if any(p is not q for p, q in zip(parts, content, strict=True)):
                update["content"] = parts
        if message.tool_calls:
            calls = _scan_calls(ctx, rails, message.tool_calls, "input", f"messages[{i}]")
            if calls is not None:
                update["tool_calls"] = calls
        if update:
            changed = True
            message = message.model_copy(update=update)
        messages.append(message)
    if changed:
        ctx.request = request.model_copy(update={"messages": messages})


# -- output --------------------------------------------------------------------


def _check_output(
    ctx: RequestContext, rails: list[CompiledGuardrail], text: str, stream: bool
) -> None:
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


@hookimpl(tryfirst=True)
def turnout_post_response(ctx: RequestContext, response: ChatResponse) -> ChatResponse | None:
    rails = [r for r in ctx.route.guardrails if r.output]
    if not rails:
        return None
    changed = False
    for choice in response.choices:
        message = choice.message
        text = message.content
        if text:
            _check_output(ctx, rails, text, stream=False)
            place = text_place("choices", choice.index, "message.content")
            redacted = scan_text(ctx, rails, text, "output", place)
            if redacted is not text:
                message.content = redacted
                changed = True
        if message.tool_calls:
            path = f"choices[{choice.index}].message"
            calls = _scan_calls(ctx, rails, message.tool_calls, "output", path)
            if calls is not None:
                message.tool_calls = calls
                changed = True
    return response if changed else None


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


def _stream_calls(
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
        name, arguments = function.get("name"), function.get("arguments")
        here = f"choices[{choice.index}].delta.tool_calls[{k}].function"
        held = state.calls.get((choice.index, k))
        if held is None:
            place = call_place(f"{here}.arguments", call, name)
            held = state.calls[(choice.index, k)] = Held(place)
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
            call["function"] = {**function, "arguments": out}
    if not final:
        return
    for (i, k), held in state.calls.items():
        if i == choice.index and k not in seen and held.pending:
            out = _release(ctx, rails, held, final, arguments=True)
            if out:
                tail = {"index": k, "function": {"arguments": out}}
                delta.tool_calls = [*(delta.tool_calls or ()), tail]


@hookimpl(tryfirst=True)
def turnout_stream_chunk(ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
    rails = [r for r in ctx.route.guardrails if r.output]
    if not rails or not chunk.choices:
        return None
    state = state_of(ctx)
    for choice in chunk.choices:
        held = state.held.get(choice.index)
        if held is None:
            place = text_place("choices", choice.index, "delta.content")
            held = state.held[choice.index] = Held(place)
        delta = choice.delta
        if delta.content:
            held.pending += delta.content
            held.parts.append(delta.content)
        final = choice.finish_reason is not None
        out = _release(ctx, rails, held, final)
        if delta.content is not None or out:
            delta.content = out
        if delta.tool_calls or (final and state.calls):
            _stream_calls(ctx, rails, state, choice, final)
        if final:
            _check_output(ctx, rails, "".join(held.parts), stream=True)
    return chunk
