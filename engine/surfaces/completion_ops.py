"""The legacy completions request kinds the serve path runs: native where the
target's provider speaks ``completions`` (``native: [completions]`` in the
policy), one chat turn elsewhere, decided per attempt of one plan.

The planning view is the chat turn (the first prompt, for a request with
several): routing, budgets, guardrails and the cache read it. A pre-request
hook that rewrote it (a guardrail redacting a secret) makes every attempt a
chat turn of the rewritten request, so the caller's body never goes past it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

import pydantic_core
from turnout.contract.calls import call_chain, has_impls
from turnout.contract.provider import NativeEvent, Provider, ProviderCall
from turnout.errors import FailureClass, ProviderError
from turnout.policy.table import RoutingTable
from turnout.routing.plan import Attempt
from turnout.run.context import RequestContext
from turnout.run.operation import Operation, StreamOperation
from turnout.run.streams import ChatStream, chunks_from_response
from turnout.surfaces.completions import (
    REQUEST_TYPE,
    CompletionRequest,
    completion_of,
    parse_completion_request,
    to_chat_request,
    untranslatable,
)
from turnout.surfaces.host import ChatHost
from turnout.wire.chat import ChatChunk, ChatRequest, ChatResponse, ExtraFields, Usage

__all__ = ["CompletionCall", "CompletionStreamCall", "CompletionTurn", "CompletionsAPI", "Finished"]

SURFACE = "completions"
DONE = b"data: [DONE]\n\n"


class CompletionTurn:
    """One request: the body as written, its chat turn, its planning view."""

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        self.refusal = untranslatable(request)
        self.chat: ChatRequest | None = None if self.refusal else to_chat_request(request)
        self.planning = self.chat or to_chat_request(request, lenient=True)

    def native(self, provider: Provider, call: ProviderCall) -> bool:
        return provider.speaks(SURFACE) and call.request is self.planning

    def native_body(self, model: str) -> bytes:
        """The body as written (the fields the caller set), with the target's model."""
        body = self.request.model_dump(exclude_unset=True, exclude={"fallbacks"})
        return pydantic_core.to_json({**body, "model": model})

    def chat_for(self, call: ProviderCall) -> ChatRequest:
        if call.request is not self.planning:
            return call.request  # a hook's rewrite
        if self.chat is None:
            assert self.refusal is not None
            raise ProviderError(
                FailureClass.NOT_FOUND, f"skipped: {self.refusal.message} (a chat target)"
            )
        return self.chat


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    output = raw.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(output, int):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output)


def chat_of_completion(payload: dict[str, Any]) -> ChatResponse:
    """A native ``text_completion`` read as a chat answer (what hooks see)."""
    choices = [
        {
            "index": c.get("index", 0),
            "message": {"role": "assistant", "content": str(c.get("text") or "")},
            "finish_reason": c.get("finish_reason") or "stop",
        }
        for c in payload.get("choices") or ()
        if isinstance(c, dict)
    ]
    return ChatResponse.model_validate(
        {
            "id": str(payload.get("id") or "cmpl"),
            "model": str(payload.get("model") or ""),
            "choices": choices,
            "usage": _usage(payload.get("usage")),
        }
    )


class Finished:
    """A whole answer: the native ``text_completion`` or the chat answer behind it."""

    __slots__ = ("chat", "native")

    def __init__(self, native: dict[str, Any] | None, chat: ChatResponse | None) -> None:
        self.native = native
        self.chat = chat

    def completion(self, request: CompletionRequest, fields: ExtraFields | None) -> dict[str, Any]:
        if self.native is None:
            assert self.chat is not None
            return completion_of(request, self.chat)
        extra = fields.model_dump(mode="json") if fields is not None else {}
        return {**self.native, "extra_fields": {**extra, "request_type": REQUEST_TYPE}}


class CompletionCall(Operation[Finished]):
    request_type = REQUEST_TYPE

    def __init__(self, turn: CompletionTurn) -> None:
        self.turn = turn
        self.fields: ExtraFields | None = None

    async def _call(self, provider: Provider, call: ProviderCall) -> Finished:
        turn = self.turn
        if turn.native(provider, call):
            payload = await provider.native(call, SURFACE, turn.native_body(call.model))
            if not isinstance(payload.get("choices"), list):
                raise ProviderError(
                    FailureClass.SERVER_ERROR, "the upstream answered with no text_completion"
                )
            return Finished(payload, None)
        call.request = turn.chat_for(call)
        return Finished(None, await provider.chat(call))

    def call(self, provider: Provider, call: ProviderCall) -> Awaitable[Finished]:
        return self._call(provider, call)

    def usage(self, result: Finished) -> Usage | None:
        if result.native is not None:
            return _usage(result.native.get("usage"))
        return result.chat.usage if result.chat is not None else None

    async def accept(
        self,
        ctx: RequestContext,
        attempt: Attempt,
        result: Finished,
        fields: ExtraFields,
        hook: Any,
    ) -> Finished:
        self.fields = fields
        redactor = ctx.table.redactor
        if result.native is not None and redactor:
            result.native = redactor.json(result.native)
        if not has_impls(hook.turnout_post_response):
            return result
        chat = result.chat if result.chat is not None else chat_of_completion(result.native or {})
        chat.extra_fields = fields
        out = await call_chain(hook.turnout_post_response, "response", chat, ctx=ctx)
        return result if out is chat else Finished(None, out)

    def short_circuit(self, response: ChatResponse) -> Finished:
        self.fields = response.extra_fields
        return Finished(None, response)


class CompletionStreamCall(StreamOperation[Any]):
    """Streamed: native chunks relayed as sent (``data: [DONE]`` included);
    chat chunks as ``text_completion`` chunks. The relay gives bytes."""

    request_type = REQUEST_TYPE

    def __init__(self, turn: CompletionTurn) -> None:
        self.turn = turn
        self.translated = True
        self.ident = "cmpl-" + os.urandom(12).hex()
        self._echo = bool(turn.request.echo)

    def open(self, provider: Provider, call: ProviderCall) -> AsyncIterator[Any]:
        turn = self.turn
        if turn.native(provider, call):
            return provider.native_stream(call, SURFACE, turn.native_body(call.model))
        call.request = turn.chat_for(call)
        return provider.stream(call)

    def usage(self, chunk: Any) -> Usage | None:
        if isinstance(chunk, ChatChunk):
            return chunk.usage
        if chunk.name == "done" or '"usage"' not in chunk.data:
            return None
        try:
            return _usage(pydantic_core.from_json(chunk.data).get("usage"))
        except (ValueError, AttributeError):
            return None

    def piece(self, chunk: ChatChunk) -> dict[str, Any] | None:
        """A chat chunk as a ``text_completion`` chunk (the prompt first with ``echo``)."""
        out: dict[str, Any] = {
            "id": self.ident,
            "object": "text_completion",
            "created": chunk.created,
            "model": chunk.model,
            "choices": [],
        }
        for choice in chunk.choices:
            text = choice.delta.content or ""
            if self._echo:
                text, self._echo = self.turn.request.text + text, False
            out["choices"].append({"text": text, "index": choice.index, "logprobs": None,
                                   "finish_reason": choice.finish_reason})  # fmt: skip
        if chunk.usage is not None:
            out["usage"] = chunk.usage.model_dump(
                include={"prompt_tokens", "completion_tokens", "total_tokens"}
            )
        return out if out["choices"] or "usage" in out else None

    def relay(self, ctx: RequestContext, hook: Any) -> Callable[[Any], Awaitable[Any]]:
        hooks = has_impls(hook.turnout_stream_chunk)
        redactor = ctx.table.redactor
        options = ctx.request.stream_options
        wants_usage = options is not None and bool(options.include_usage)

        async def relay(item: Any) -> bytes | None:
            if isinstance(item, NativeEvent):
                self.translated = False
                if item.name == "done":
                    return DONE
                data: str = redactor.text(item.data) if redactor else item.data
                return b"data: " + data.encode() + b"\n\n"
            chunk: ChatChunk | None = item
            if not wants_usage and item.usage is not None and not item.choices:
                return None
            if hooks:
                chunk = await call_chain(hook.turnout_stream_chunk, "chunk", item, ctx=ctx)
            out = self.piece(chunk) if chunk is not None else None
            return b"data: " + pydantic_core.to_json(out) + b"\n\n" if out else None

        return relay

    def replay(self, response: ChatResponse) -> Iterable[Any]:
        self.translated = False
        out = [self.piece(chunk) for chunk in chunks_from_response(response)]
        return [*(b"data: " + pydantic_core.to_json(p) + b"\n\n" for p in out if p), DONE]


_NATIVE: WeakKeyDictionary[RoutingTable, bool] = WeakKeyDictionary()


def _speaks_anywhere(table: RoutingTable) -> bool:
    """Whether any provider of the policy takes completions natively (once per policy)."""
    found = _NATIVE.get(table)
    if found is None:
        found = _NATIVE[table] = any(
            compiled.provider.speaks(SURFACE) for compiled in table.providers.values()
        )
    return found


class CompletionsAPI:
    """Legacy completions over ``engine``: native or one chat turn, per attempt
    (``turnout.surfaces.completion_ops``)."""

    def __init__(self, engine: ChatHost) -> None:
        self.engine = engine

    def _turn(self, body: Any, headers: Mapping[str, str] | None) -> Any:
        request = body if isinstance(body, CompletionRequest) else parse_completion_request(body)
        turn = CompletionTurn(request)
        if turn.refusal is not None:  # only a native target can take it: is there one?
            plan = self.engine.plan(turn.planning, headers=headers)
            if not any(a.target.provider.provider.speaks(SURFACE) for a in plan.attempts):
                raise turn.refusal
        return turn

    async def create(
        self,
        body: CompletionRequest | Mapping[str, Any] | bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        turn = self._turn(body, headers)
        if turn.chat is not None and not _speaks_anywhere(self.engine.table):
            # no provider of the policy takes completions natively: the chat path
            # as it is (its own shortcuts make it cheaper than an operation)
            chat = await self.engine.chat(turn.chat, headers=headers, request_id=request_id)
            return completion_of(turn.request, chat)
        op = CompletionCall(turn)
        answer = await self.engine.serve(turn.planning, op, headers=headers, request_id=request_id)
        completion: dict[str, Any] = answer.completion(turn.request, op.fields)
        return completion

    def stream(
        self,
        body: CompletionRequest | Mapping[str, Any] | bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> tuple[ChatStream, Any]:
        """The stream of a streamed completion: its items are server-sent event
        bytes; the operation says whether ``data: [DONE]`` is still to come."""
        turn = self._turn(body, headers)
        op = CompletionStreamCall(turn)
        stream = self.engine.stream(turn.planning, headers=headers, request_id=request_id, op=op)
        return stream, op
