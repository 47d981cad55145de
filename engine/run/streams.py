"""Stream helpers: replaying a whole response as chunks, and the stream handle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from turnout.wire.chat import ChatChunk, ChatResponse, ChunkChoice, Delta, ExtraFields

if TYPE_CHECKING:
    from turnout.routing.plan import Attempt, Plan
    from turnout.run.context import RequestContext
    from turnout.wire.chat import AttemptRecord

__all__ = ["ChatStream", "chunks_from_response"]


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


class ChatStream:
    """An async iterator of chunks, with the plan and, once it ends, ``extra_fields``.

    Iterate it once. Closing it (``await stream.aclose()``, or leaving an
    ``async with`` block) cancels the upstream request. Once the first chunk
    has arrived, ``attempt`` is the attempt serving it and ``trail`` the
    attempts made so far (a gateway sends them as response headers).
    """

    def __init__(self, plan: Plan, request_id: str, ctx: RequestContext | None = None) -> None:
        self.plan = plan
        self.request_id = request_id
        self.extra_fields: ExtraFields | None = None
        """None until the stream has ended well."""
        self._chunks: AsyncIterator[ChatChunk] | None = None
        self._ctx = ctx

    def attach(self, chunks: AsyncIterator[ChatChunk]) -> None:
        """Give the stream its source of chunks (the engine does this)."""
        self._chunks = chunks

    def publish(self, fields: ExtraFields) -> None:
        """Called by the engine with the extra_fields once the stream has ended well."""
        self.extra_fields = fields

    @property
    def attempt(self) -> Attempt | None:
        """The attempt being made or serving, once there is one."""
        return self._ctx.attempt if self._ctx is not None else None

    @property
    def scratch(self) -> dict[str, Any]:
        """Plugins' per-request state (``ctx.scratch``)."""
        return self._ctx.scratch if self._ctx is not None else {}

    @property
    def cache(self) -> str | None:
        """The response cache's outcome (``ctx.cache``): ``hit``, ``miss``, ``bypass`` or None."""
        return self._ctx.cache if self._ctx is not None else None

    @property
    def trail(self) -> list[AttemptRecord]:
        """One record per upstream call made so far."""
        return self._ctx.trail if self._ctx is not None else []

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._chunks is None:
            raise StopAsyncIteration
        return await anext(self._chunks)

    async def aclose(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
