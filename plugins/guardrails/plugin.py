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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from engine import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FailureClass,
    Finding,
    ProviderError,
    RequestContext,
    TurnoutError,
    hookimpl,
)
from engine.guardrail import CompiledGuardrail
from engine.hookspecs import RegisterGuardrail
from engine.metrics import GUARDRAIL_ACTIONS

from .deny import Deny
from .json_schema import JsonSchema
from .limits import Limits
from .pii import Pii
from .redact import Redactor, without_overlaps
from .secrets import Secrets

__all__ = [
    "HOLD_BACK",
    "turnout_post_response",
    "turnout_pre_request",
    "turnout_register_guardrails",
    "turnout_stream_chunk",
]

log = structlog.get_logger("turnout.guardrails")

HOLD_BACK = 64
"""Characters of streamed output held back for output guardrails."""

SCRATCH = "plugins.guardrails"
REPORT = "guardrail"
"""``ctx.scratch["guardrail"]``: what guardrails did to this request (a list)."""

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


# -- acting on findings --------------------------------------------------------


def _count(ctx: RequestContext, rail: CompiledGuardrail, direction: str, action: str) -> None:
    key = (ctx.route.name, rail.name, direction, action)
    child = _children.get(key)
    if child is None:
        child = _children[key] = GUARDRAIL_ACTIONS.labels(*key)
    child.inc()


_children: dict[tuple[str, str, str, str], Any] = {}


def _report(
    ctx: RequestContext, rail: CompiledGuardrail, direction: str, action: str, what: list[str]
) -> None:
    entry = {"guardrail": rail.name, "on": direction, "action": action, "found": what}
    ctx.scratch.setdefault(REPORT, []).append(entry)
    _count(ctx, rail, direction, action)
    if action in ("log", "retry", "fallback"):
        log.warning(
            "guardrail finding",
            request_id=ctx.request_id,
            route=ctx.route.name,
            **entry,
        )


def _blocked(rail: CompiledGuardrail, direction: str, what: str) -> TurnoutError:
    subject = "request" if direction == "input" else "response"
    return TurnoutError(
        f"the {subject} was blocked by guardrail {rail.name!r}: {what}",
        status_code=400,
        code="guardrail_blocked",
        param="messages" if direction == "input" else None,
    )


def _failed(
    ctx: RequestContext, rail: CompiledGuardrail, direction: str, exc: Exception
) -> TurnoutError:
    log.error(
        "guardrail raised",
        request_id=ctx.request_id,
        route=ctx.route.name,
        guardrail=rail.name,
        exc_info=exc,
    )
    _count(ctx, rail, direction, "error")
    return TurnoutError(
        f"guardrail {rail.name!r} failed ({type(exc).__name__}), so the request was refused: "
        "guardrails fail closed",
        status_code=500,
        type="api_error",
        code="guardrail_error",
    )


def _kinds(findings: list[Finding]) -> list[str]:
    return sorted({f.kind for f in findings})


@dataclass(slots=True)
class _State:
    redactor: Redactor = field(default_factory=Redactor)
    held: dict[int, _Held] = field(default_factory=dict)


@dataclass(slots=True)
class _Held:
    pending: str = ""
    parts: list[str] = field(default_factory=list)


def _state(ctx: RequestContext) -> _State:
    state = ctx.scratch.get(SCRATCH)
    if state is None:
        state = ctx.scratch[SCRATCH] = _State()
    return state  # type: ignore[no-any-return]


def _scan_text(
    ctx: RequestContext,
    rails: list[CompiledGuardrail],
    text: str,
    direction: str,
    findings_of: dict[str, list[Finding]] | None = None,
) -> str:
    """Run text guardrails over ``text``; block, or return it redacted as configured."""
    redact: list[Finding] = []
    for rail in rails:
        if findings_of is not None:
            found = findings_of.get(rail.name, [])
        else:
            try:
                found = rail.guardrail.scan(text)
            except Exception as exc:
                raise _failed(ctx, rail, direction, exc) from exc
        if not found:
            continue
        kinds = _kinds(found)
        if rail.action == "block":
            _report(ctx, rail, direction, "block", kinds)
            raise _blocked(rail, direction, f"found {', '.join(kinds)}")
        if rail.action == "redact":
            _report(ctx, rail, direction, "redact", kinds)
            redact += found
        else:
            _report(ctx, rail, direction, "log", kinds)
    if not redact:
        return text
    return _state(ctx).redactor.redact(text, without_overlaps(redact))


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
            raise _failed(ctx, rail, "input", exc) from exc
        if violation is not None:
            _report(ctx, rail, "input", "block" if rail.action == "block" else "log", [violation])
            if rail.action == "block":
                raise _blocked(rail, "input", violation)
    changed = False
    messages = []
    for message in request.messages:
        content = message.content
        new: Any = content
        if isinstance(content, str):
            new = _scan_text(ctx, rails, content, "input")
        elif content:
            parts = []
            for part in content:
                text = part.get("text")
                if isinstance(text, str):
                    redacted = _scan_text(ctx, rails, text, "input")
                    if redacted is not text:
                        part = {**part, "text": redacted}
                parts.append(part)
            if any(p is not q for p, q in zip(parts, content, strict=True)):
                new = parts
        if new is not content:
            changed = True
            message = message.model_copy(update={"content": new})
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
            raise _failed(ctx, rail, "output", exc) from exc
        if violation is None:
            continue
        action = rail.action
        if action == "log":
            _report(ctx, rail, "output", "log", [violation])
            continue
        if action in ("retry", "fallback") and not stream:
            _report(ctx, rail, "output", action, [violation])
            raise ProviderError(
                FailureClass.SERVER_ERROR if action == "retry" else FailureClass.CONTENT_FILTER,
                f"guardrail {rail.name!r}: {violation}",
                code="guardrail_rejected_output",
            )
        _report(ctx, rail, "output", "block", [violation])
        raise _blocked(rail, "output", violation)


@hookimpl(tryfirst=True)
def turnout_post_response(ctx: RequestContext, response: ChatResponse) -> ChatResponse | None:
    rails = [r for r in ctx.route.guardrails if r.output]
    if not rails:
        return None
    changed = False
    for choice in response.choices:
        text = choice.message.content
        if not text:
            continue
        _check_output(ctx, rails, text, stream=False)
        redacted = _scan_text(ctx, rails, text, "output")
        if redacted is not text:
            choice.message.content = redacted
            changed = True
    return response if changed else None


def _release(ctx: RequestContext, rails: list[CompiledGuardrail], held: _Held, final: bool) -> str:
    """The part of ``held.pending`` that may go out now, guardrails applied."""
    pending = held.pending
    findings_of: dict[str, list[Finding]] = {}
    spans: list[Finding] = []
    for rail in rails:
        try:
            found = rail.guardrail.scan(pending)
        except Exception as exc:
            raise _failed(ctx, rail, "output", exc) from exc
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
    return _scan_text(ctx, rails, head, "output", head_findings)


@hookimpl(tryfirst=True)
def turnout_stream_chunk(ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
    rails = [r for r in ctx.route.guardrails if r.output]
    if not rails or not chunk.choices:
        return None
    state = _state(ctx)
    for choice in chunk.choices:
        held = state.held.get(choice.index)
        if held is None:
            held = state.held[choice.index] = _Held()
        delta = choice.delta
        if delta.content:
            held.pending += delta.content
            held.parts.append(delta.content)
        final = choice.finish_reason is not None
        out = _release(ctx, rails, held, final)
        if delta.content is not None or out:
            delta.content = out
        if final:
            _check_output(ctx, rails, "".join(held.parts), stream=True)
    return chunk
