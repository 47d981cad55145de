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

__all__ = [
    "DONE",
    "cancel_on_disconnect",
    "client_left",
    "error_event",
    "event",
    "is_tail",
    "write_chunks",
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


def is_tail(chunk: ChatChunk) -> bool:
    """A chunk with nothing to show: usage only, or finish reasons with empty deltas."""
    if not chunk.choices:
        return True
    for choice in chunk.choices:
        delta = choice.delta
        if choice.finish_reason is None or delta.content or delta.tool_calls or delta.refusal:
            return False
    return True


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
