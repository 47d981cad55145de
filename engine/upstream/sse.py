"""Server-sent events read from a byte stream (an ``Upstream`` stream's body).

The parsing is httpx2's own (the WHATWG rules, with its cap on one event's
size), fed from bytes instead of an httpx2 response, so providers can read
events from any ``StreamReply``.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator

import httpx2 as httpx
from httpx2._config import DEFAULT_MAX_EVENT_SIZE_BYTES

# httpx2's event-stream parser, used by its ``EventSource``; one name, kept private there
from httpx2._sse import _SSEParser

__all__ = ["MalformedEvents", "ServerSentEvent", "server_sent_events"]

ServerSentEvent = httpx.ServerSentEvent


class MalformedEvents(ValueError):
    """The body is not a readable event stream (an event over the size cap)."""


async def server_sent_events(
    chunks: AsyncIterator[bytes], *, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE_BYTES
) -> AsyncIterator[ServerSentEvent]:
    """The events in ``chunks``, decoded as UTF-8 (bad bytes replaced), as they complete."""
    parser = _SSEParser(max_event_size)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        async for chunk in chunks:
            text = decoder.decode(chunk)
            if text:
                for event in parser.decode(text):
                    yield event
        tail = decoder.decode(b"", final=True)
        if tail:
            for event in parser.decode(tail):
                yield event
        for event in parser.flush():
            yield event
    except httpx.SSEError as exc:
        raise MalformedEvents(str(exc)) from None
