"""Chat completion chunks as Anthropic Messages stream events.

``EventTranslator(message_id, model)`` takes each ``ChatChunk`` of a chat
stream and gives the events to send, in the order the SDK's stream helper
needs: ``message_start`` (then ``ping``) first; each content block opened by
``content_block_start``, filled by ``thinking_delta`` / ``text_delta`` /
``input_json_delta`` deltas and closed by ``content_block_stop`` before the
next opens; at the end one ``message_delta`` with the stop reason and the
usage (chat streams report usage last), then ``message_stop``. ``error``
renders a failure after the stream began as an ``error`` event.
"""

from __future__ import annotations

from typing import Any

from turnout.surfaces.messages.translate import messages_usage, stop_reason
from turnout.wire.chat import ChatChunk, Usage

__all__ = ["Event", "EventTranslator"]

Event = tuple[str, dict[str, Any]]


class EventTranslator:
    """One stream's state: the open block, the tool calls seen, the usage."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.started = False
        self._index = -1
        self._open: str | None = None  # "text", "thinking", or "tool:<chat index>"
        self._finish: str | None = None
        self._usage: Usage | None = None

    def _start(self, chunk_model: str) -> list[Event]:
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": chunk_model or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]  # fmt: skip

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._index += 1
        self._open = kind
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        events.append(("content_block_start", start))
        return events

    def _delta(self, delta: dict[str, Any]) -> Event:
        return ("content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta})  # fmt: skip

    def feed(self, chunk: ChatChunk) -> list[Event]:
        events = [] if self.started else self._start(chunk.model)
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            delta = choice.delta
            reasoning = (delta.model_extra or {}).get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                if self._open != "thinking":
                    block: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
                    events += self._block("thinking", block)
                events.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            text = delta.content if delta.content else delta.refusal
            if text:
                if self._open != "text":
                    events += self._block("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.tool_calls or ():
                events += self._tool_call(call)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        key = f"tool:{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open != key:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{self.message_id[-12:]}{self._index + 1}",
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._block(key, block)
        arguments = function.get("arguments")
        if arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def finish(self) -> list[Event]:
        """The stream ended well: close the open block, the stop reason and usage."""
        events = [] if self.started else self._start(self.model)
        events += self._close()
        delta = {"stop_reason": stop_reason(self._finish), "stop_sequence": None}
        usage = messages_usage(self._usage)
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
