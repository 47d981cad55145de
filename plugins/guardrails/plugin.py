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

Output is more than ``content``: a response message's (or delta's)
``reasoning_content`` / ``reasoning`` (the model's thinking) and ``refusal``
are scanned and redacted like content, the legacy ``function_call`` like one
tool call, and Anthropic's signed ``thinking_blocks`` too (``scan_thinking``:
a block whose text would need redacting is dropped). On streams each of these
has its own hold-back buffer per choice (``streaming.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pluggy
from prometheus_client import CollectorRegistry
from turnout.plugin_api import (
    ChatChunk,
    ChatResponse,
    CompiledGuardrail,
    CompiledRoute,
    Finding,
    RegisterGuardrail,
    RequestContext,
    for_routes,
    hookimpl,
)
from turnout.plugins.guardrails.acting import (
    ACTIONS,
    ActionCounter,
    Place,
    Redact,
    blocked,
    call_place,
    check_output,
    failed,
    report,
    scan_text,
    scan_thinking,
    scan_value,
    state_of,
    text_place,
    unredactable,
)
from turnout.plugins.guardrails.arguments import redact_arguments
from turnout.plugins.guardrails.deny import Deny
from turnout.plugins.guardrails.json_schema import JsonSchema, validator_of
from turnout.plugins.guardrails.limits import Limits
from turnout.plugins.guardrails.pii import Pii
from turnout.plugins.guardrails.secrets import Secrets
from turnout.plugins.guardrails.streaming import HOLD_BACK, REASONING, stream_chunk

__all__ = [
    "HOLD_BACK",
    "Guardrails",
    "turnout_engine_started",
    "turnout_register_guardrails",
]

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


def _scan_function(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    function: dict[str, Any],
    direction: str,
    here: str,
    call: dict[str, Any],
) -> dict[str, Any] | None:
    """Scan a call's ``{"name", "arguments"}``; ``function`` redacted, or None."""
    name, arguments = function.get("name"), function.get("arguments")
    if isinstance(name, str) and name:
        place = call_place(f"{here}.name", call, name)
        scan_text(ctx, rails, name, direction, place, redact=unredactable)
    if isinstance(arguments, dict | list) and arguments:  # sent as JSON, not a string
        out_value = scan_value(ctx, rails, arguments, direction, f"{here}.arguments")
        return None if out_value is arguments else {**function, "arguments": out_value}
    if isinstance(arguments, str) and arguments:
        place = call_place(f"{here}.arguments", call, name)
        redact = _arguments_redactor(ctx)
        out = scan_text(ctx, rails, arguments, direction, place, redact=redact)
        if out is not arguments:
            return {**function, "arguments": out}
    return None


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
        here = f"{path}.tool_calls[{k}].function"
        redacted = _scan_function(ctx, rails, function, direction, here, call)
        if redacted is not None:
            changed = changed or list(calls)
            changed[k] = {**call, "function": redacted}
    return changed


# -- input ---------------------------------------------------------------------


OFF_LOOP = 64 * 1024
"""Characters of message text above which input is scanned in a worker thread:
RE2 releases the GIL while it matches, so other requests (``/health``
included) go on meanwhile. Below it a scan takes well under a millisecond and
a thread hand-off would cost more than it saves."""


def _text_size(request: Any) -> int:
    size = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            size += len(content)
        elif content:
            size += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return size


def check_input(ctx: RequestContext) -> Any:
    """Run the input guardrails: None when done, or an awaitable when the input
    is large enough to be scanned in a worker thread."""
    if any(isinstance(r.guardrail, JsonSchema) for r in ctx.route.guardrails):
        validator_of(ctx.request)  # a schema that costs unbounded work: 400 before any call
    rails = [r for r in ctx.route.guardrails if r.input]
    if not rails:
        return None
    if _text_size(ctx.request) > OFF_LOOP:
        return _scan_off_loop(ctx, rails)
    _scan_input(ctx, rails)
    return None


async def _scan_off_loop(ctx: RequestContext, rails: list[CompiledGuardrail]) -> None:
    await asyncio.to_thread(_scan_input, ctx, rails)


def _scan_input(ctx: RequestContext, rails: list[CompiledGuardrail]) -> None:
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
                if len(part) > 2 or (len(part) == 2 and "text" not in part):
                    # image_url, input_audio, file, ...: every string in them
                    rest = {k: v for k, v in part.items() if k not in ("type", "text")}
                    here = f"messages[{i}].content[{j}]"
                    scanned = scan_value(ctx, rails, rest, "input", here)
                    if scanned is not rest:
                        part = {**part, **scanned}
                parts.append(part)
            if any(p is not q for p, q in zip(parts, content, strict=True)):
                update["content"] = parts
        if message.tool_calls:
            calls = _scan_calls(ctx, rails, message.tool_calls, "input", f"messages[{i}]")
            if calls is not None:
                update["tool_calls"] = calls
        if message.name:
            name = scan_value(ctx, rails, message.name, "input", f"messages[{i}].name")
            if name is not message.name:
                update["name"] = name
        if message.model_extra:
            extra = scan_value(ctx, rails, message.model_extra, "input", f"messages[{i}]")
            if extra is not message.model_extra:
                update.update(extra)
        if update:
            changed = True
            message = message.model_copy(update=update)
        messages.append(message)
    fields = _scan_fields(ctx, rails, request)
    if changed or fields:
        ctx.request = request.model_copy(update={"messages": messages, **fields})


_OWN_FIELDS = frozenset({"cache"})
"""Request extras that are turnout's own controls, not content."""


def _scan_fields(
    ctx: RequestContext, rails: list[CompiledGuardrail], request: Any
) -> dict[str, Any]:
    """Scan what a request passes through besides its messages: ``metadata``,
    ``prediction`` and any field turnout does not know; the fields redacted."""
    update: dict[str, Any] = {}
    if request.metadata:
        metadata = scan_value(ctx, rails, request.metadata, "input", "metadata")
        if metadata is not request.metadata:
            update["metadata"] = metadata
    for name, value in (request.model_extra or {}).items():
        if name in _OWN_FIELDS:
            continue
        out = scan_value(ctx, rails, value, "input", name)
        if out is not value:
            update[name] = out
    return update


# -- output --------------------------------------------------------------------


def _scan_extra(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    extra: dict[str, Any],
    index: int,
) -> bool:
    """Scan a response message's reasoning, thinking blocks and legacy
    ``function_call`` (extra fields); whether any was redacted."""
    changed = False
    for name in REASONING:
        text = extra.get(name)
        if isinstance(text, str) and text:
            place = text_place("choices", index, f"message.{name}")
            redacted = scan_text(ctx, rails, text, "output", place)
            if redacted is not text:
                extra[name] = redacted
                changed = True
    blocks = extra.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        kept = scan_thinking(ctx, rails, blocks, f"choices[{index}].message")
        if kept is not None:
            extra["thinking_blocks"] = kept
            changed = True
    function = extra.get("function_call")
    if isinstance(function, dict):
        here = f"choices[{index}].message.function_call"
        redacted_call = _scan_function(ctx, rails, function, "output", here, {})
        if redacted_call is not None:
            extra["function_call"] = redacted_call
            changed = True
    return changed


def check_response(ctx: RequestContext, response: ChatResponse) -> ChatResponse | None:
    rails = [r for r in ctx.route.guardrails if r.output]
    if not rails:
        return None
    changed = False
    for choice in response.choices:
        message = choice.message
        extra = message.__pydantic_extra__
        if extra and _scan_extra(ctx, rails, extra, choice.index):
            changed = True
        text = message.content
        if text:
            check_output(ctx, rails, text, stream=False)
            place = text_place("choices", choice.index, "message.content")
            redacted = scan_text(ctx, rails, text, "output", place)
            if redacted is not text:
                message.content = redacted
                changed = True
        refusal = message.refusal
        if refusal:
            place = text_place("choices", choice.index, "message.refusal")
            redacted = scan_text(ctx, rails, refusal, "output", place)
            if redacted is not refusal:
                message.refusal = redacted
                changed = True
        if message.tool_calls:
            path = f"choices[{choice.index}].message"
            calls = _scan_calls(ctx, rails, message.tool_calls, "output", path)
            if calls is not None:
                message.tool_calls = calls
                changed = True
    return response if changed else None


def check_chunk(ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
    rails = [r for r in ctx.route.guardrails if r.output]
    if not rails or not chunk.choices:
        return None
    stream_chunk(ctx, rails, chunk)
    return chunk


def _guarded(route: CompiledRoute) -> bool:
    return bool(route.guardrails)


def _output_guarded(route: CompiledRoute) -> bool:
    return any(rail.output for rail in route.guardrails)


class Guardrails:
    """The guardrail hooks of one engine, counting into its ``turnout_guardrail_actions``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = ActionCounter(registry)

    @hookimpl(tryfirst=True)
    @for_routes(_guarded)
    def turnout_pre_request(self, ctx: RequestContext) -> Any:
        if ctx.route.guardrails:
            ctx.scratch[ACTIONS] = self.actions
            return check_input(ctx)
        return None

    @hookimpl(tryfirst=True)
    @for_routes(_output_guarded)
    def turnout_post_response(
        self, ctx: RequestContext, response: ChatResponse
    ) -> ChatResponse | None:
        return check_response(ctx, response)

    @hookimpl(tryfirst=True)
    @for_routes(_output_guarded)
    def turnout_stream_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
        return check_chunk(ctx, chunk)


@hookimpl
def turnout_engine_started(
    plugin_manager: pluggy.PluginManager, metrics: CollectorRegistry
) -> None:
    plugin_manager.register(Guardrails(metrics), name="turnout.plugins.guardrails.engine")
