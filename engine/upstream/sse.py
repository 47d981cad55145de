"""Server-sent events read from a byte stream (an ``Upstream`` stream's body).

``server_sent_events`` decodes events with httpx2's own parser (the WHATWG
rules, with its cap on one event's size), fed from bytes instead of an httpx2
response, so providers can read events from any ``StreamReply``.

``EventSplitter`` only finds where each event's bytes end (the blank line),
for a stream relayed as it came: it decodes nothing, so its events are passed
on byte for byte, and a caller reads their fields (``event_fields``) only when
an event is not the plain one-line ``data:`` kind.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator

import httpx2 as httpx
from httpx2._config import DEFAULT_MAX_EVENT_SIZE_BYTES

# httpx2's event-stream parser, used by its ``EventSource``; one name, kept private there
from httpx2._sse import _SSEParser

__all__ = [
    "EventSplitter",
    "MalformedEvents",
    "ServerSentEvent",
    "event_fields",
    "server_sent_events",
]

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


class EventSplitter:
    """Splits a byte stream into its events' bytes, each without its blank line.

    Line ends are normalised to ``\\n`` (``\\r\\n`` and lone ``\\r`` are
    line ends too), even across chunk boundaries; nothing else changes. Each
    byte is searched once (linear on hostile input), and an event that grows
    past ``max_event_size`` raises ``MalformedEvents``, as the decoder's cap
    does. Bytes after the last blank line at the end of the stream are no
    event (the WHATWG rule) and are dropped.
    """

    __slots__ = ("_buffer", "_cr", "_max")

    def __init__(self, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE_BYTES) -> None:
        self._buffer = b""
        self._cr = False
        self._max = max_event_size

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events that ``chunk`` completes, in order (often none)."""
        if self._cr or b"\r" in chunk:
            chunk = self._normalise(chunk)
        buffer = self._buffer
        if buffer:
            start = max(len(buffer) - 1, 0)
            buffer += chunk
        else:
            start = 0
            buffer = chunk
        end = buffer.find(b"\n\n", start)
        if end < 0:
            self._keep(buffer)
            return []
        last = buffer.rfind(b"\n\n")
        events = buffer[:last].split(b"\n\n") if end != last else [buffer[:end]]
        self._keep(buffer[last + 2 :])
        if buffer.find(b"\n\n\n", 0, last + 2) >= 0:  # blank lines between events
            events = [event.lstrip(b"\n") for event in events]
        return events

    def _keep(self, rest: bytes) -> None:
        if self._max is not None and len(rest) > self._max:
            raise MalformedEvents(f"an event is larger than {self._max} bytes")
        self._buffer = rest

    def _normalise(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self._cr:  # the last chunk ended in \r: a line end, unless \n follows
            self._cr = False
            chunk = chunk[1:] if chunk.startswith(b"\n") else chunk
        if chunk.endswith(b"\r"):
            self._cr = True
            chunk = chunk[:-1] + b"\n"
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def event_fields(event: bytes) -> tuple[str, bytes]:
    """An event's name (``message`` when it names none) and its data lines joined
    by ``\\n``: the WHATWG field rules for events ``EventSplitter`` gave;
    comments, ``id`` and ``retry`` are dropped."""
    name = "message"
    data: list[bytes] = []
    for line in event.removeprefix(b"\xef\xbb\xbf").split(b"\n"):
        field, colon, value = line.partition(b":")
        if not colon:
            value = b""
        elif value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace") or "message"
    return name, b"\n".join(data)
