"""The relayed chat stream: the caller's events as bytes, when no hook needs chunks.

A gateway stream whose route calls no ``turnout_stream_chunk`` implementation
(no output guardrail, no cache, no plugin of its own: ``relays_events``, from
the hooks selected for the route when the policy was compiled) is served by
``EventsOperation``: each attempt calls the provider's ``stream_events`` (an
OpenAI-compatible upstream's events passed on as they came, any other
provider's chunks written as the parsed path writes them), so nothing is
validated or written again per chunk. Planning, budgets, fallback before the
first event, settlement from usage and observers are the
chat stream's own (``turnout.run.serve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from turnout.contract.provider import Provider, ProviderCall
from turnout.policy.redaction import Redactor
from turnout.run.context import RequestContext
from turnout.run.operation import StreamOperation
from turnout.run.streams import chunks_from_response
from turnout.wire.chat import ChatResponse, Usage
from turnout.wire.relay import ChunkRelay, EventBatch, RelayedEvents

__all__ = ["EventsOperation", "relays_events"]

_REPLAY = ChunkRelay(True, Redactor(()))
"""A pre-request hook's answer is replayed whole, as the parsed path replays it."""


def relays_events(hooks: Any) -> bool:
    """Whether nothing on a route needs its stream as parsed chunks: no
    ``turnout_stream_chunk`` implementation is selected for it (``hooks``, the
    route's ``RouteHooks``; the cache's applies where the route caches, the
    guardrails' where it has an output guardrail). Unselected hooks (a plain
    plugin manager's) list every implementation, so their chunks stay parsed."""
    chunk_hook = hooks.turnout_stream_chunk
    impls = getattr(chunk_hook, "impls", None)
    return not (impls if impls is not None else chunk_hook.get_hookimpls())


async def _same(events: RelayedEvents) -> RelayedEvents:
    return events


class EventsOperation(StreamOperation[RelayedEvents]):
    """Chat completions streamed as ``RelayedEvents``; one per request."""

    def __init__(self, relay: ChunkRelay) -> None:
        self._relay = relay

    @classmethod
    def of(cls, ctx: RequestContext) -> EventsOperation:
        """The operation for ``ctx``'s request: its include_usage, its policy's secrets."""
        options = ctx.request.stream_options
        keep_usage = options is not None and bool(options.include_usage)
        return cls(ChunkRelay(keep_usage, ctx.table.redactor))

    def open(self, provider: Provider, call: ProviderCall) -> AsyncIterator[RelayedEvents]:
        return provider.stream_events(call, self._relay)

    def usage(self, chunk: RelayedEvents) -> Usage | None:
        return chunk.usage

    def relay(
        self, ctx: RequestContext, hook: Any
    ) -> Callable[[RelayedEvents], Awaitable[RelayedEvents | None]]:
        return _same

    def replay(self, response: ChatResponse) -> list[RelayedEvents]:
        replayed = []
        for chunk in chunks_from_response(response):
            batch = EventBatch()
            _REPLAY.add(chunk, batch)
            replayed.append(batch.relayed())
        return replayed
