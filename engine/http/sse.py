"""Writing a ``ChatStream`` as Server-Sent Events, and noticing when the client leaves.

The wire form is OpenAI's: one ``data: {chunk}`` event per chunk, then
``data: [DONE]``. An error after the first chunk ends the stream with an
``event: error`` whose data is the OpenAI error object (the official SDKs
raise ``APIError`` on it) and no ``[DONE]``, so a truncated answer never
looks complete.

``extra_fields`` is only known once the upstream has finished, so it rides
on the last chunk: the usage chunk when the caller asked for
``stream_options.include_usage``, else the chunk carrying ``finish_reason``.
Those tail chunks carry no text, so holding each until the next chunk (or
the end) delays nothing a user sees.

A relayed stream (``ChatStream.relayed``: ``turnout.run.passthrough``) gives
the events' bytes of each upstream read at once; ``write_events`` sends them
in one body message per read, with the same tail rule.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from turnout.errors import TurnoutError
from turnout.http.asgi import Receive, Send
from turnout.http.wire import internal_error, json_bytes
from turnout.run.streams import ChatStream
from turnout.wire.chat import ChatChunk
from turnout.wire.relay import RelayedEvents, chunk_event
from turnout.wire.relay import is_tail as is_tail

__all__ = [
    "DONE",
    "cancel_on_disconnect",
    "client_left",
    "error_event",
    "event",
    "is_tail",
    "write_chunks",
    "write_events",
]

log = structlog.get_logger("turnout.http")

DONE = b"data: [DONE]\n\n"
_NO_EXTRA = {"extra_fields"}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def event(chunk: ChatChunk, *, with_extra: bool = False) -> bytes:
    body = chunk.model_dump_json() if with_extra else chunk.model_dump_json(exclude=_NO_EXTRA)
    return b"data: " + body.encode() + b"\n\n"


def error_event(error: TurnoutError) -> bytes:
    return b"event: error\ndata: " + json_bytes(error.to_dict()) + b"\n\n"


async def write_chunks(stream: ChatStream, first: ChatChunk, send: Send) -> TurnoutError | None:
    """Send ``first`` and the rest of ``stream`` as body events; end the body.

    Returns the error that ended the stream early (already sent as an error
    event), or None after ``[DONE]``.
    """
    held: ChatChunk | None = None
    chunk: ChatChunk | None = first
    try:
        while chunk is not None:
            if held is not None:
                await send({"type": "http.response.body", "body": event(held), "more_body": True})
                held = None
            if is_tail(chunk):
                held = chunk
            else:
                await send({"type": "http.response.body", "body": event(chunk), "more_body": True})
            chunk = await anext(stream, None)
    except Exception as exc:
        return await _end(stream, held, send, _stream_error(stream, exc))
    return await _end(stream, held, send, None)


async def write_events(stream: ChatStream, first: RelayedEvents, send: Send) -> TurnoutError | None:
    """``write_chunks`` for a relayed stream: ``first`` and the rest of ``stream``
    (``RelayedEvents``), one body message per upstream read; end the body.

    Returns the error that ended the stream early (already sent as an error
    event), or None after ``[DONE]``.
    """
    held: ChatChunk | None = None
    events: RelayedEvents | None = first
    more = stream.__anext__
    try:
        while events is not None:
            data = events.data
            if held is not None and (data or events.held is not None):
                data = chunk_event(held) + data
                held = None
            if events.held is not None:
                held = events.held
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            try:
                events = await more()  # type: ignore[assignment]
            except StopAsyncIteration:
                events = None
    except Exception as exc:
        return await _end(stream, held, send, _stream_error(stream, exc))
    return await _end(stream, held, send, None)


async def _end(
    stream: ChatStream, held: ChatChunk | None, send: Send, error: TurnoutError | None
) -> TurnoutError | None:
    """End the body: the held last chunk (with ``extra_fields`` and ``[DONE]``
    after a whole stream), or the chunk then the error event; returns ``error``."""
    if error is not None:
        if held is not None:
            await send({"type": "http.response.body", "body": event(held), "more_body": True})
        await send({"type": "http.response.body", "body": error_event(error)})
        return error
    tail = b""
    if held is not None:
        held.extra_fields = stream.extra_fields
        tail = event(held, with_extra=True)
    await send({"type": "http.response.body", "body": tail + DONE})
    return None


def _stream_error(stream: ChatStream, exc: Exception) -> TurnoutError:
    """The error event's error for what ended a stream, with the request's trail."""
    if isinstance(exc, TurnoutError):
        error = exc
    else:
        log.exception("stream failed unexpectedly", request_id=stream.request_id)
        error = internal_error(stream.request_id)
    error.extra_fields = {
        "request_id": stream.request_id,
        "route": stream.plan.route.name,
        "attempts": [r.model_dump() for r in stream.trail],
        **error.extra_fields,
    }
    return error


async def _cancel_when_gone(receive: Receive, task: asyncio.Task[Any]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()


def cancel_on_disconnect(receive: Receive) -> asyncio.Task[None]:
    """Cancel the current task if the client disconnects; returns the watcher.

    The caller cancels the watcher as soon as its work is done, before it
    awaits anything else, so a disconnect can only cancel unfinished work (a
    server's ``http.disconnect`` after the response is never seen). One task
    per request, for plain completions and streams alike. The request body
    must have been read already.
    """
    task = asyncio.current_task()
    assert task is not None
    return asyncio.get_running_loop().create_task(_cancel_when_gone(receive, task))


def client_left(watcher: asyncio.Task[None]) -> bool:
    """On a ``CancelledError``: True if ``watcher`` caused it and nothing else
    asked to cancel this task, so the request may end as a 499; False when it
    must propagate (a server shutting down cancelled the request)."""
    if not watcher.done() or watcher.cancelled() or watcher.exception() is not None:
        return False
    task = asyncio.current_task()
    return task is not None and task.uncancel() == 0
