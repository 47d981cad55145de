"""Stream helpers: replaying a whole response as chunks, and the stream handle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from turnout.routing.plan import Attempt, Plan
from turnout.run.context import RequestContext
from turnout.wire.chat import (
    AttemptRecord,
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    ExtraFields,
)

__all__ = ["ChatStream", "StreamSource", "chunks_from_response"]


def chunks_from_response(response: ChatResponse) -> Iterator[ChatChunk]:
    """A complete response as a well-formed chunk sequence (role, content, finish, usage)."""
    base = {
        "id": response.id,
        "created": response.created,
        "model": response.model,
        "system_fingerprint": response.system_fingerprint,
    }
    for choice in response.choices:
        message = choice.message
        yield ChatChunk(
            **base,
            choices=[
                ChunkChoice(
                    index=choice.index,
                    delta=Delta(
                        role=message.role,
                        content=message.content,
                        refusal=message.refusal,
                        tool_calls=[
                            {"index": i, **call} for i, call in enumerate(message.tool_calls)
                        ]
                        if message.tool_calls
                        else None,
                    ),
                )
            ],
        )
        yield ChatChunk(
            **base,
            choices=[
                ChunkChoice(index=choice.index, delta=Delta(), finish_reason=choice.finish_reason)
            ],
        )
    if response.usage is not None:
        yield ChatChunk(**base, choices=[], usage=response.usage)


class StreamSource(Protocol):
    """What a ``ChatStream`` reads: the serve path's ``Serving`` of the request."""

    @property
    def ctx(self) -> RequestContext: ...

    @property
    def fields(self) -> ExtraFields | None: ...

    def stream(self) -> AsyncIterator[ChatChunk]: ...


class ChatStream:
    """An async iterator of chunks, with the plan and, once it ends, ``extra_fields``.

    Iterate it once. Closing it (``await stream.aclose()``, or leaving an
    ``async with`` block) cancels the upstream request. Once the first chunk
    has arrived, ``plan`` is the plan in force (restricted by budgets and
    breakers), ``attempt`` the attempt serving it and ``trail`` the attempts
    made so far (a gateway sends them as response headers). ``relayed``: the
    items are ``RelayedEvents`` (the caller's event bytes), not chunks.
    """

    def __init__(self, source: StreamSource, *, relayed: bool = False) -> None:
        self.relayed = relayed
        self._source = source
        self._ctx = source.ctx
        self._chunks: AsyncIterator[ChatChunk] = source.stream()

    @property
    def plan(self) -> Plan:
        """The request's plan: once iteration began, as budgets and breakers left it."""
        return self._ctx.plan

    @property
    def request_id(self) -> str:
        return self._ctx.request_id

    @property
    def extra_fields(self) -> ExtraFields | None:
        """None until the stream has ended well."""
        return self._source.fields

    @property
    def attempt(self) -> Attempt | None:
        """The attempt being made or serving, once there is one."""
        return self._ctx.attempt

    @property
    def scratch(self) -> dict[str, Any]:
        """Plugins' per-request state (``ctx.scratch``)."""
        return self._ctx.scratch

    @property
    def cache(self) -> str | None:
        """The response cache's outcome (``ctx.cache``): ``hit``, ``miss``, ``bypass`` or None."""
        return self._ctx.cache

    @property
    def trail(self) -> list[AttemptRecord]:
        """One record per upstream call made so far."""
        return self._ctx.trail

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
