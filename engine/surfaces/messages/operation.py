"""The Messages request kinds the serve path runs: native or translated, per attempt.

Each attempt of a plan decides for itself. A target whose provider speaks
``"messages"`` (the anthropic type, so any Anthropic-compatible ``base_url``)
gets the caller's body as written, with only ``model`` replaced (and the
seed's ``fallbacks`` left out), and the caller's
``anthropic-version`` / ``anthropic-beta`` headers; its answer comes back as
sent. Any other target gets the chat translation (``translate``). So a
fallback from Anthropic to OpenAI, or back, is one plan.

A pre-request hook that rewrote the request (a guardrail redacting a secret)
makes every attempt translated from the rewritten request: the caller's body
is never sent past a hook that changed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import pydantic_core
from turnout.contract.calls import call_chain, has_impls
from turnout.contract.provider import NativeEvent, Provider, ProviderCall
from turnout.errors import FailureClass, ProviderError
from turnout.routing.plan import Attempt, Plan
from turnout.run.context import RequestContext
from turnout.run.operation import Operation, StreamOperation
from turnout.run.streams import chunks_from_response
from turnout.surfaces.messages.events import EventTranslator
from turnout.surfaces.messages.translate import (
    chat_of_message,
    message_of,
    to_chat_request,
    untranslatable,
    usage_of,
)
from turnout.surfaces.messages.wire import REQUEST_TYPE, MessagesRequest
from turnout.wire.chat import ChatChunk, ChatRequest, ChatResponse, ExtraFields, Usage

__all__ = ["Answer", "MessagesCall", "MessagesStreamCall", "Turn", "attempt_modes", "frame"]

SURFACE = "messages"
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")
_DIGEST = "turnout_messages_body"
"""The planning view's field holding a digest of the caller's body, so the
response cache tells apart requests that differ only where chat cannot see
(signatures, ``cache_control``, server tools); never sent upstream."""


def frame(name: str, data: Any) -> bytes:
    """One server-sent event."""
    return b"event: " + name.encode() + b"\ndata: " + pydantic_core.to_json(data) + b"\n\n"


class Turn:
    """One Messages request: the body as sent, its chat translation, its planning view."""

    def __init__(
        self,
        request: MessagesRequest,
        raw: Mapping[str, Any],
        headers: Mapping[str, str],
        message_id: str,
    ) -> None:
        self.request = request
        self.message_id = message_id
        own = request.turnout_fallbacks is not None  # the seed's fallbacks stay here
        self.body = {k: v for k, v in raw.items() if not (own and k == "fallbacks")}
        self.headers = {name: headers[name] for name in PASSED_HEADERS if headers.get(name)}
        self.refused = untranslatable(request)
        self.chat: ChatRequest | None = None if self.refused else to_chat_request(request)
        view = self.chat or to_chat_request(request, lenient=True)
        digest = hashlib.blake2b(pydantic_core.to_json(self.body), digest_size=16).hexdigest()
        self.planning = view.model_copy()
        self.planning.__pydantic_extra__ = {**(view.model_extra or {}), _DIGEST: digest}

    def native_body(self, model: str) -> bytes:
        return pydantic_core.to_json({**self.body, "model": model})

    def chat_for(self, call: ProviderCall) -> ChatRequest:
        """The chat request for a translated attempt (the hook's rewrite, if any)."""
        if call.request is not self.planning:
            rewritten = call.request.model_copy()
            extra = dict(rewritten.model_extra or {})
            extra.pop(_DIGEST, None)
            rewritten.__pydantic_extra__ = extra
            return rewritten
        if self.chat is None:
            raise ProviderError(
                FailureClass.NOT_FOUND,
                f"skipped: {self.refused[0]} needs a target that speaks the Messages API",
            )
        return self.chat

    def native(self, provider: Provider, call: ProviderCall) -> bool:
        """Whether this attempt sends the body as written."""
        if not provider.speaks(SURFACE) or call.request is not self.planning:
            return False
        if self.headers:
            call.headers = {**call.headers, **self.headers}
        return True


def attempt_modes(turn: Turn, plan: Plan) -> list[str]:
    """How each attempt of ``plan`` would send ``turn``: native, translated, or
    skipped (what chat cannot be given)."""
    out = []
    for attempt in plan.attempts:
        name = f"{attempt.provider}/{attempt.model}"
        if attempt.target.provider.provider.speaks(SURFACE):
            out.append(f"{name}: native (the body as written)")
        elif turn.refused:
            out.append(f"{name}: skipped ({turn.refused[0]} needs a native target)")
        else:
            out.append(f"{name}: translated to chat completions")
    return out


class Answer:
    """A whole answer: the native ``Message`` or the chat answer it translates from."""

    __slots__ = ("chat", "fields", "native")

    def __init__(self, native: dict[str, Any] | None, chat: ChatResponse | None) -> None:
        self.native = native
        self.chat = chat
        self.fields: ExtraFields | None = None

    def message(self, message_id: str) -> dict[str, Any]:
        if self.native is not None:
            return self.native
        assert self.chat is not None
        return message_of(self.chat, message_id)


class MessagesCall(Operation[Answer]):
    """``POST /v1/messages`` without streaming."""

    request_type = REQUEST_TYPE

    def __init__(self, turn: Turn) -> None:
        self.turn = turn

    async def _call(self, provider: Provider, call: ProviderCall) -> Answer:
        turn = self.turn
        if turn.native(provider, call):
            payload = await provider.native(call, SURFACE, turn.native_body(call.model))
            if payload.get("type") != "message" or not isinstance(payload.get("content"), list):
                raise ProviderError(
                    FailureClass.SERVER_ERROR, "the upstream answered with JSON that is no message"
                )
            return Answer(payload, None)
        call.request = turn.chat_for(call)
        return Answer(None, await provider.chat(call))

    def call(self, provider: Provider, call: ProviderCall) -> Awaitable[Answer]:
        return self._call(provider, call)

    def usage(self, result: Answer) -> Usage | None:
        if result.native is not None:
            return usage_of(result.native.get("usage"))
        return result.chat.usage if result.chat is not None else None

    async def accept(
        self, ctx: RequestContext, attempt: Attempt, result: Answer, fields: ExtraFields, hook: Any
    ) -> Answer:
        """Post-response hooks (cache, output guardrails) see the answer as chat;
        one that changed it makes the caller get the changed answer, translated.
        A native answer has the policy's secrets masked wherever they appear (it
        is passed on as sent)."""
        result.fields = fields
        redactor = ctx.table.redactor
        if result.native is not None and redactor:  # nothing an upstream echoes reaches a caller
            result.native = redactor.json(result.native)
        if not has_impls(hook.turnout_post_response):
            return result
        chat = result.chat if result.chat is not None else chat_of_message(result.native or {})
        chat.extra_fields = fields
        out = await call_chain(hook.turnout_post_response, "response", chat, ctx=ctx)
        if out is not chat:
            changed = Answer(None, out)
            changed.fields = fields
            return changed
        return result

    def short_circuit(self, response: ChatResponse) -> Answer:
        answer = Answer(None, response)
        answer.fields = response.extra_fields
        return answer


class MessagesStreamCall(StreamOperation[Any]):
    """``POST /v1/messages`` with ``stream: true``: native events are relayed as
    sent; translated chunks become events (``EventTranslator``). The relay gives
    bytes: one or more server-sent events per upstream item."""

    request_type = REQUEST_TYPE

    def __init__(self, turn: Turn, translator: EventTranslator) -> None:
        self.turn = turn
        self.translator = translator
        self.translated = True
        """Whether the caller still needs the translator's closing events."""
        self._usage: dict[str, Any] = {}

    def open(self, provider: Provider, call: ProviderCall) -> AsyncIterator[Any]:
        turn = self.turn
        if turn.native(provider, call):
            return provider.native_stream(call, SURFACE, turn.native_body(call.model))
        call.request = turn.chat_for(call)
        return provider.stream(call)

    def usage(self, chunk: Any) -> Usage | None:
        if isinstance(chunk, ChatChunk):
            return chunk.usage
        data = chunk.data
        if chunk.name == "message_start":
            message = data.get("message") if isinstance(data, dict) else None
            self._usage.update((message or {}).get("usage") or {})
        elif chunk.name == "message_delta" and isinstance(data, dict):
            self._usage.update(data.get("usage") or {})
        else:
            return None
        return usage_of(self._usage)

    def relay(self, ctx: RequestContext, hook: Any) -> Callable[[Any], Awaitable[Any]]:
        hooks = has_impls(hook.turnout_stream_chunk)
        translator = self.translator
        redactor = ctx.table.redactor

        async def relay(item: Any) -> bytes | None:
            if isinstance(item, NativeEvent):
                self.translated = False
                event: NativeEvent = item
                masked = redactor.text(event.raw) if redactor else event.raw
                if masked != event.raw:  # a secret in the event: relay it masked
                    event = NativeEvent(event.name, pydantic_core.from_json(masked), masked)
                if hooks:
                    return await _hooked_native(event, ctx, hook, translator)
                return b"event: " + event.name.encode() + b"\ndata: " + event.raw.encode() + b"\n\n"
            chunk = item
            if hooks:
                chunk = await call_chain(hook.turnout_stream_chunk, "chunk", chunk, ctx=ctx)
                if chunk is None:
                    return None
            return b"".join(frame(name, data) for name, data in translator.feed(chunk))

        return relay

    def replay(self, response: ChatResponse) -> Iterable[Any]:
        """A cached answer, as a complete event stream."""
        self.translated = False
        translator = self.translator
        out = [
            frame(n, d)
            for chunk in chunks_from_response(response)
            for n, d in translator.feed(chunk)
        ]
        out.extend(frame(n, d) for n, d in translator.finish())
        return out


async def _hooked_native(
    event: NativeEvent, ctx: RequestContext, hook: Any, translator: EventTranslator
) -> bytes | None:
    """A native event through the stream-chunk hooks: a text delta as a chat
    chunk (a guardrail may change or drop it), the end as a finish chunk (so a
    cache collecting the stream sees it end); other events pass as sent."""
    data = event.data if isinstance(event.data, dict) else {}
    delta = data.get("delta") if event.name in ("content_block_delta", "message_delta") else None
    if not isinstance(delta, dict) or (
        event.name == "content_block_delta" and delta.get("type") != "text_delta"
    ):
        return b"event: " + event.name.encode() + b"\ndata: " + event.raw.encode() + b"\n\n"
    base = {"id": translator.message_id, "model": translator.model}
    if event.name == "content_block_delta":
        chunk = ChatChunk.model_validate(
            {**base, "choices": [{"index": 0, "delta": {"content": delta.get("text", "")}}]}
        )
    else:
        finish = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}.get(
            str(delta.get("stop_reason")), "stop"
        )
        chunk = ChatChunk.model_validate(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        )
    out = await call_chain(hook.turnout_stream_chunk, "chunk", chunk, ctx=ctx)
    if event.name == "message_delta":
        return b"event: message_delta\ndata: " + event.raw.encode() + b"\n\n"
    if out is None:
        return None
    text = out.choices[0].delta.content if out.choices else None
    if text == delta.get("text"):
        return b"event: " + event.name.encode() + b"\ndata: " + event.raw.encode() + b"\n\n"
    return frame(event.name, {**data, "delta": {**delta, "text": text or ""}})
