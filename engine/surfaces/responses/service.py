"""The Responses API over an engine: create (plain or streamed), retrieve,
delete and list input items, with stored conversations.

``ResponsesAPI(engine)`` is the in-process API the gateway's handlers call;
every request goes through ``engine.chat`` / ``engine.stream`` as a chat
request, so the policy routes it like any chat completion.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError
from turnout.errors import TurnoutError
from turnout.run.streams import ChatStream
from turnout.state import StateUnavailable
from turnout.surfaces.host import ChatHost
from turnout.surfaces.responses.events import EventTranslator
from turnout.surfaces.responses.store import ConversationStore, StoredResponse
from turnout.surfaces.responses.translate import (
    build_response,
    finish_status,
    input_item_list,
    items_to_messages,
    output_items,
    to_chat_request,
    usage_of,
)
from turnout.surfaces.responses.wire import REQUEST_TYPE, ResponsesRequest, new_id
from turnout.wire.chat import ChatChunk, ChatRequest, ChatResponse, ExtraFields

__all__ = ["ResponseStream", "ResponsesAPI", "parse_responses_request"]

Respond = Callable[[dict[str, Any], ChatResponse], Awaitable[None]]


def parse_responses_request(body: bytes | str | Mapping[str, Any]) -> ResponsesRequest:
    """Validate once; TurnoutError 400 (missing / wrong type) or 422 (bad value)."""
    try:
        if isinstance(body, bytes | str):
            return ResponsesRequest.model_validate_json(body)
        return ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            raise TurnoutError(
                f"the body is not valid JSON: {first['msg']}", code="invalid_json"
            ) from None
        status = 400 if first["type"] in ("missing", "model_type") else 422
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]]
        raise TurnoutError(
            "invalid request: " + "; ".join(parts),
            status_code=status,
            code="invalid_request",
            param=".".join(str(p) for p in first["loc"]) or None,
        ) from None


def _extra(fields: ExtraFields | None) -> dict[str, Any]:
    data = fields.model_dump(mode="json") if fields is not None else {}
    data["request_type"] = REQUEST_TYPE
    return data


def _not_found(response_id: str, param: str | None = None) -> TurnoutError:
    return TurnoutError(
        f"no stored response {response_id!r}: it is unknown, expired, deleted, was made "
        "with store: false, or belongs to another API key",
        status_code=400 if param else 404,
        code="response_not_found",
        param=param,
    )


def _unavailable(exc: StateUnavailable) -> TurnoutError:
    return TurnoutError(
        f"stored responses cannot be reached: the state backend is unavailable ({exc})",
        status_code=503,
        type="api_error",
        code="state_unavailable",
    )


class _Turn:
    """One prepared request: the chat request and what storing it needs."""

    def __init__(
        self,
        request: ResponsesRequest,
        chat: ChatRequest,
        history: list[dict[str, Any]],
        owner: str | None,
    ) -> None:
        self.request = request
        self.chat = chat
        self.history = history
        self.owner = owner
        self.id = new_id("resp")
        self.created_at = int(time.time())

    def record(self, response: dict[str, Any]) -> StoredResponse:
        given = self.request.input if self.request.input is not None else []
        history = [
            *self.history,
            *items_to_messages(given),
            *items_to_messages(response["output"], "output"),
        ]
        return StoredResponse(response, input_item_list(given), history, self.owner)


class ResponsesAPI:
    """OpenAI's Responses API, translated to chat for ``engine``."""

    def __init__(self, engine: ChatHost) -> None:
        self.engine = engine

    @property
    def store(self) -> ConversationStore:
        ttl = self.engine.table.policy.state.responses_ttl
        return ConversationStore(self.engine.ledger.backend, ttl)

    def _owner(self, headers: Mapping[str, str]) -> str | None:
        limits = self.engine.table.limits
        if limits is None or limits.keys is None:
            return None
        return limits.keys.authenticate(headers).name  # 401

    async def _prepare(self, body: Any, headers: Mapping[str, str]) -> _Turn:
        request = body if isinstance(body, ResponsesRequest) else parse_responses_request(body)
        owner = self._owner(headers)
        history: list[dict[str, Any]] = []
        if request.previous_response_id:
            try:
                prior = await self.store.load(request.previous_response_id, owner)
            except StateUnavailable as exc:
                raise _unavailable(exc) from None
            if prior is None:
                raise _not_found(request.previous_response_id, "previous_response_id")
            history = prior.history
        chat = to_chat_request(request, history)
        limit = self.engine.table.policy.gateway.max_messages
        if len(chat.messages) > limit:
            raise TurnoutError(
                f"the conversation has {len(chat.messages)} messages, more than the gateway's "
                f"limit of {limit}; start a new one or raise gateway.max_messages",
                code="too_many_messages",
                param="input",
            )
        return _Turn(request, chat, history, owner)

    async def _save(self, turn: _Turn, response: dict[str, Any]) -> None:
        if turn.request.stored:
            try:
                await self.store.save(turn.record(response))
            except StateUnavailable as exc:
                raise _unavailable(exc) from None

    async def create(
        self,
        body: ResponsesRequest | Mapping[str, Any] | bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        respond: Respond | None = None,
    ) -> dict[str, Any]:
        """One non-streamed response (a ``response`` object with ``extra_fields``).

        :param respond: awaited with the response and the chat answer behind
            it once stored, before the engine's observers run (see ``Engine.chat``).
        """
        headers = headers or {}
        turn = await self._prepare(body, headers)
        out: dict[str, Any] = {}

        async def served(chat: ChatResponse) -> None:
            finish = chat.choices[0].finish_reason if chat.choices else None
            status, incomplete = finish_status(finish)
            response = build_response(
                turn.request,
                id=turn.id,
                created_at=turn.created_at,
                status=status,
                output=output_items(chat),
                model=chat.model,
                usage=usage_of(chat.usage),
                incomplete_details=incomplete,
            )
            await self._save(turn, response)
            out.update(response, extra_fields=_extra(chat.extra_fields))
            if respond is not None:
                await respond(out, chat)

        await self.engine.chat(turn.chat, headers=headers, request_id=request_id, respond=served)
        return out

    async def stream(
        self,
        body: ResponsesRequest | Mapping[str, Any] | bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> ResponseStream:
        """A streamed response; planning errors raise here, upstream errors
        before the first chunk raise from ``ResponseStream.open``."""
        headers = headers or {}
        turn = await self._prepare(body, headers)
        chat = self.engine.stream(turn.chat, headers=headers, request_id=request_id)
        return ResponseStream(self, turn, chat)

    async def retrieve(
        self, response_id: str, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return (await self._load(response_id, headers or {})).response

    async def delete(
        self, response_id: str, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        owner = self._owner(headers or {})
        try:
            deleted = await self.store.delete(response_id, owner)
        except StateUnavailable as exc:
            raise _unavailable(exc) from None
        if not deleted:
            raise _not_found(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def input_items(
        self,
        response_id: str,
        *,
        headers: Mapping[str, str] | None = None,
        order: str = "desc",
        limit: int = 20,
        after: str | None = None,
    ) -> dict[str, Any]:
        """A page of the response's input items (``order`` desc: newest first)."""
        if order not in ("asc", "desc"):
            raise TurnoutError("order must be asc or desc", code="invalid_request", param="order")
        if not 1 <= limit <= 100:
            raise TurnoutError("limit must be from 1 to 100", code="invalid_request", param="limit")
        items = list((await self._load(response_id, headers or {})).input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }

    async def _load(self, response_id: str, headers: Mapping[str, str]) -> StoredResponse:
        owner = self._owner(headers)
        try:
            record = await self.store.load(response_id, owner)
        except StateUnavailable as exc:
            raise _unavailable(exc) from None
        if record is None:
            raise _not_found(response_id)
        return record


class ResponseStream:
    """A streamed response: ``await open()`` (the first chunk: errors before it
    raise), then iterate the events (dicts, in order)."""

    def __init__(self, api: ResponsesAPI, turn: _Turn, chat: ChatStream) -> None:
        self.api = api
        self.turn = turn
        self.chat = chat
        self.translator = EventTranslator(turn.request, turn.id, turn.created_at)
        self._first: ChatChunk | None = None

    async def open(self) -> None:
        first = await anext(self.chat, None)
        if first is None:
            raise TurnoutError(
                "the upstream stream ended without a chunk",
                status_code=502,
                type="api_error",
                code="empty_stream",
            )
        self._first = first

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        if self._first is None:
            await self.open()
        translator = self.translator
        for event in translator.start():
            yield event
        assert self._first is not None
        for event in translator.feed(self._first):
            yield event
        try:
            async for chunk in self.chat:
                for event in translator.feed(chunk):
                    yield event
        except TurnoutError as exc:
            for event in translator.fail(exc):
                yield event
            return
        finally:
            await self.chat.aclose()
        events = translator.finish()
        assert translator.response is not None
        await self.api._save(self.turn, translator.response)
        events[-1]["response"] = {
            **translator.response,
            "extra_fields": _extra(self.chat.extra_fields),
        }
        for event in events:
            yield event

    async def aclose(self) -> None:
        await self.chat.aclose()
