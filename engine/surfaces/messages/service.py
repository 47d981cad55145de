"""The Anthropic Messages API over an engine: create (plain or streamed) and
count_tokens, routed by the policy like any chat completion.

``MessagesAPI(engine)`` is the in-process API (``engine.messages``) and what
the gateway's ``/v1/messages`` handlers call. Every request is served by the
engine's serve path (``Engine.serve`` / ``Engine.stream`` with a Messages
operation), so routing, fallbacks, retries, budgets, rate limits, breakers,
cache, guardrails, metrics and the request log apply as they do to chat.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, cast

import pydantic_core
from turnout.errors import FailureClass, ProviderError, TurnoutError
from turnout.routing.tokens import estimate_prompt_tokens
from turnout.run.account import WorstCase
from turnout.run.operation import Operation
from turnout.run.streams import ChatStream
from turnout.surfaces.host import ChatHost
from turnout.surfaces.messages.events import EventTranslator
from turnout.surfaces.messages.operation import (
    SURFACE,
    Answer,
    MessagesCall,
    MessagesStreamCall,
    Turn,
    frame,
)
from turnout.surfaces.messages.wire import (
    REQUEST_TYPE,
    MessagesRequest,
    error_body,
    parse_count_tokens,
    parse_messages_request,
)
from turnout.wire.chat import ExtraFields, Usage

__all__ = ["MessageStream", "MessagesAPI", "TokenCount"]

Respond = Callable[[dict[str, Any], ExtraFields | None], Awaitable[None]]

COUNT_SURFACE = "messages.count_tokens"


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def extra(fields: ExtraFields | None) -> dict[str, Any]:
    """``extra_fields`` with ``request_type: messages`` (only when a client asks)."""
    data = fields.model_dump(mode="json") if fields is not None else {}
    data["request_type"] = REQUEST_TYPE
    return data


class TokenCount:
    """A count_tokens answer: ``input_tokens``, and whether the upstream counted
    (``exact``) or the engine estimated (``estimate``)."""

    __slots__ = ("input_tokens", "source")

    def __init__(self, input_tokens: int, source: str) -> None:
        self.input_tokens = input_tokens
        self.source = source


class _Count(Operation[TokenCount]):
    """count_tokens through the serve path: a native target counts; any other
    is answered with the estimate, without a call. Costs nothing."""

    request_type = "messages.count_tokens"

    def __init__(self, body: dict[str, Any], estimate: int) -> None:
        self.body = body
        self.estimate = estimate

    async def _call(self, provider: Any, call: Any) -> TokenCount:
        if not provider.speaks(COUNT_SURFACE):
            return TokenCount(self.estimate, "estimate")
        answer = await provider.native(
            call, COUNT_SURFACE, pydantic_core.to_json({**self.body, "model": call.model})
        )
        tokens = answer.get("input_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise ProviderError(FailureClass.SERVER_ERROR, "count_tokens answered without a count")
        return TokenCount(tokens, "exact")

    def call(self, provider: Any, call: Any) -> Awaitable[TokenCount]:
        return self._call(provider, call)

    def usage(self, result: TokenCount) -> Usage | None:
        return None

    def worst_case(self, attempt: Any, plan: Any) -> WorstCase:
        return WorstCase(0, 0.0)

    async def accept(
        self, ctx: Any, attempt: Any, result: TokenCount, fields: Any, hook: Any
    ) -> TokenCount:
        return result

    def short_circuit(self, response: Any) -> TokenCount:
        return TokenCount(self.estimate, "estimate")


class MessagesAPI:
    """Anthropic's Messages API over ``engine``."""

    def __init__(self, engine: ChatHost) -> None:
        self.engine = engine

    def _turn(self, body: Any, headers: Mapping[str, str]) -> Turn:
        if isinstance(body, tuple):
            request, raw = body
        else:
            request, raw = parse_messages_request(body)
        limit = self.engine.table.policy.gateway.max_messages
        if len(request.messages) > limit:
            raise TurnoutError(
                f"the request has {len(request.messages)} messages, more than the gateway's "
                f"limit of {limit}; send fewer or raise gateway.max_messages",
                code="too_many_messages",
                param="messages",
            )
        turn = Turn(request, raw, headers, new_message_id())
        if turn.refused:
            self._check_native_target(turn, headers)
        return turn

    def _check_native_target(self, turn: Turn, headers: Mapping[str, str]) -> None:
        """A request only a native target can take: 400 when the plan has none."""
        plan = self.engine.plan(turn.planning, headers=headers)
        if not any(
            a.target.provider.provider.speaks(SURFACE) for a in plan.attempts
        ):
            field = turn.refused[0]
            raise TurnoutError(
                f"{field} needs a target that speaks the Messages API itself, and no target "
                f"of route {plan.route.name!r} does",
                code="invalid_request",
                param=field.split(" ")[0],
            )

    def plan(self, body: Any, *, headers: Mapping[str, str] | None = None) -> Any:
        """The plan for a Messages request (pure, no call): ``.explain()`` it;
        ``attempt_modes`` says which attempts go native."""
        return self.engine.plan(self._turn(body, headers or {}).planning, headers=headers)

    async def create(
        self,
        body: MessagesRequest
        | Mapping[str, Any]
        | bytes
        | str
        | tuple[MessagesRequest, dict[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        respond: Respond | None = None,
        with_extra: bool = False,
    ) -> dict[str, Any]:
        """One ``Message`` (the native answer as sent, or the translation).

        :param respond: awaited with the message and its extra_fields before
            the engine's observers run (see ``Engine.chat``).
        :param with_extra: add turnout's ``extra_fields`` to the message.
        """
        headers = headers or {}
        if isinstance(body, MessagesRequest):
            body = (body, body.model_dump(exclude_none=True))
        turn = self._turn(body, headers)

        async def deliver(answer: Answer) -> None:
            if respond is not None:
                await respond(self._message(turn, answer, with_extra), answer.fields)

        answer = await self.engine.serve(
            turn.planning,
            MessagesCall(turn),
            headers=headers,
            request_id=request_id,
            deliver=deliver,
        )
        return self._message(turn, answer, with_extra)

    @staticmethod
    def _message(turn: Turn, answer: Answer, with_extra: bool) -> dict[str, Any]:
        message = answer.message(turn.message_id)
        if with_extra:
            message = {**message, "extra_fields": extra(answer.fields)}
        return message

    def stream(
        self,
        body: MessagesRequest
        | Mapping[str, Any]
        | bytes
        | str
        | tuple[MessagesRequest, dict[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> MessageStream:
        """A streamed message: iterate its server-sent events (bytes). Planning
        errors raise here; upstream errors before the first event raise from
        ``MessageStream.open`` (after every fallback failed)."""
        headers = headers or {}
        if isinstance(body, MessagesRequest):
            body = (body, body.model_dump(exclude_none=True))
        turn = self._turn(body, headers)
        translator = EventTranslator(turn.message_id, turn.request.model)
        op = MessagesStreamCall(turn, translator)
        chat = self.engine.stream(turn.planning, headers=headers, request_id=request_id, op=op)
        return MessageStream(chat, op)

    async def count_tokens(
        self,
        body: Mapping[str, Any] | bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> TokenCount:
        """``input_tokens`` of a request: exact from the first target of the plan
        that counts natively, else the engine's estimate."""
        headers = headers or {}
        _, raw = parse_count_tokens(body)
        full = MessagesRequest.model_validate({**raw, "max_tokens": 1})
        turn = Turn(full, {**raw, "max_tokens": 1}, headers, new_message_id())
        estimate = estimate_prompt_tokens(turn.planning)
        native = {k: v for k, v in turn.body.items() if k != "max_tokens" or "max_tokens" in raw}
        count: TokenCount = await self.engine.serve(
            turn.planning, _Count(native, estimate), headers=headers, request_id=request_id
        )
        return count


class MessageStream:
    """A streamed message: ``await open()`` (errors before the first event
    raise), then iterate the server-sent events, as bytes."""

    def __init__(self, chat: ChatStream, op: MessagesStreamCall) -> None:
        self.chat = chat
        self.op = op
        self._first: bytes | None = None

    @property
    def message_id(self) -> str:
        return self.op.turn.message_id

    async def open(self) -> None:
        piece: Any
        async for piece in self.chat:
            if piece:
                self._first = piece
                return
        raise TurnoutError(
            "the upstream stream ended without an event",
            status_code=502,
            type="api_error",
            code="empty_stream",
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._first is None:
            await self.open()
        assert self._first is not None
        yield self._first
        try:
            async for piece in cast(AsyncIterator[bytes], self.chat):
                if piece:
                    yield piece
        finally:
            await self.chat.aclose()
        if self.op.translated:
            yield b"".join(frame(name, data) for name, data in self.op.translator.finish())

    def error(self, error: TurnoutError, request_id: str) -> bytes:
        """An ``error`` event for a failure after the stream began."""
        return frame("error", error_body(error, request_id))

    async def aclose(self) -> None:
        await self.chat.aclose()
