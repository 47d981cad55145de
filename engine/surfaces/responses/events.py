"""A chat-chunk stream as Responses API stream events.

Events come in the order the official SDKs' stream helpers check:
``response.created`` and ``response.in_progress`` first; each output item
opens with ``response.output_item.added`` (and a message's text with
``response.content_part.added``) before its deltas, and closes with its
``.done`` events and ``response.output_item.done`` carrying the same ids;
``response.completed`` (or ``response.incomplete`` when the answer was cut at
``max_output_tokens``) carries the whole output and usage. Every event has a
``sequence_number``. A failure after the start is ``response.failed``.
There is no ``[DONE]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from turnout.errors import TurnoutError
from turnout.surfaces.responses.translate import build_response, finish_status, usage_of
from turnout.surfaces.responses.wire import ResponsesRequest, new_id
from turnout.wire.chat import ChatChunk, Usage

__all__ = ["EventTranslator"]

Event = dict[str, Any]


def _new_item(kind: str) -> dict[str, Any]:
    if kind == "reasoning":
        return {"type": "reasoning", "id": new_id("rs"), "summary": []}
    return {
        "type": "message",
        "id": new_id("msg"),
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }


@dataclass
class _Open:
    """The output item being streamed."""

    kind: str  # reasoning | text | refusal | function_call
    index: int
    item: dict[str, Any]
    text: list[str] = field(default_factory=list)
    tool_index: int | None = None


class EventTranslator:
    """Feed it chunks; it returns the events each one makes.

    ``start`` → ``feed`` per chunk → ``finish`` (or ``fail``). ``response``
    is the final response object once finished (what a store keeps).
    """

    def __init__(self, request: ResponsesRequest, response_id: str, created_at: int) -> None:
        self.request = request
        self.id = response_id
        self.created_at = created_at
        self.output: list[dict[str, Any]] = []
        self.response: dict[str, Any] | None = None
        self.model: str | None = None
        self._seq = 0
        self._open: _Open | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return build_response(
            self.request,
            id=self.id,
            created_at=self.created_at,
            status=status,
            output=list(self.output),
            model=self.model,
            **extra,
        )

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self._snapshot("in_progress")),
            self._event("response.in_progress", response=self._snapshot("in_progress")),
        ]

    # -- items ---------------------------------------------------------------

    def _begin(self, kind: str, item: dict[str, Any], tool_index: int | None = None) -> list[Event]:
        events = self._close()
        index = len(self.output)
        self.output.append(item)
        self._open = _Open(kind, index, item, tool_index=tool_index)
        events.append(
            self._event("response.output_item.added", output_index=index, item=dict(item))
        )
        ids = {"item_id": item["id"], "output_index": index}
        part: dict[str, Any]
        if kind == "reasoning":
            part = {"type": "summary_text", "text": ""}
            events.append(
                self._event(
                    "response.reasoning_summary_part.added", **ids, summary_index=0, part=part
                )
            )
        elif kind in ("text", "refusal"):
            part = {
                "type": "output_text",
                "text": "",
                "annotations": [],
                "logprobs": [],
            }
            if kind == "refusal":
                part = {"type": "refusal", "refusal": ""}
            events.append(
                self._event("response.content_part.added", **ids, content_index=0, part=part)
            )
        return events

    def _close(self) -> list[Event]:
        current, self._open = self._open, None
        if current is None:
            return []
        item, text = current.item, "".join(current.text)
        ids = {"item_id": item["id"], "output_index": current.index}
        events: list[Event] = []
        part: dict[str, Any]
        if current.kind == "reasoning":
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            events += [
                self._event(
                    "response.reasoning_summary_text.done", **ids, summary_index=0, text=text
                ),
                self._event(
                    "response.reasoning_summary_part.done", **ids, summary_index=0, part=part
                ),
            ]
        elif current.kind == "text":
            part = {
                "type": "output_text",
                "text": text,
                "annotations": [],
                "logprobs": [],
            }
            item["content"], item["status"] = [part], "completed"
            events += [
                self._event(
                    "response.output_text.done", **ids, content_index=0, text=text, logprobs=[]
                ),
                self._event("response.content_part.done", **ids, content_index=0, part=part),
            ]
        elif current.kind == "refusal":
            part = {"type": "refusal", "refusal": text}
            item["content"], item["status"] = [part], "completed"
            events += [
                self._event("response.refusal.done", **ids, content_index=0, refusal=text),
                self._event("response.content_part.done", **ids, content_index=0, part=part),
            ]
        else:
            item["status"] = "completed"
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    **ids,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        events.append(
            self._event("response.output_item.done", output_index=current.index, item=dict(item))
        )
        return events

    def _delta(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open.kind != kind:
            events += self._begin(kind, _new_item(kind))
        assert self._open is not None
        self._open.text.append(text)
        ids = {"item_id": self._open.item["id"], "output_index": self._open.index}
        if kind == "reasoning":
            events.append(
                self._event(
                    "response.reasoning_summary_text.delta", **ids, summary_index=0, delta=text
                )
            )
        elif kind == "text":
            events.append(
                self._event(
                    "response.output_text.delta", **ids, content_index=0, delta=text, logprobs=[]
                )
            )
        else:
            events.append(self._event("response.refusal.delta", **ids, content_index=0, delta=text))
        return events

    def _tool(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            item = {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
                "arguments": "",
                "status": "in_progress",
            }
            self._calls[index] = item
            events += self._begin("function_call", item, tool_index=index)
        elif function.get("name"):
            item["name"] += function["name"]
        arguments = function.get("arguments") or ""
        if arguments:
            item["arguments"] += arguments
            current = self._open
            if current is not None and current.tool_index == index:
                ids = {"item_id": item["id"], "output_index": current.index}
                events.append(
                    self._event("response.function_call_arguments.delta", **ids, delta=arguments)
                )
        return events

    # -- the stream ----------------------------------------------------------

    def feed(self, chunk: ChatChunk) -> list[Event]:
        self.model = self.model or chunk.model
        if chunk.usage is not None:
            self._usage = chunk.usage
        events: list[Event] = []
        for choice in chunk.choices[:1]:
            delta = choice.delta
            reasoning = (delta.model_extra or {}).get("reasoning_content")
            if reasoning:
                events += self._delta("reasoning", str(reasoning))
            if delta.content:
                events += self._delta("text", delta.content)
            if delta.refusal:
                events += self._delta("refusal", delta.refusal)
            for call in delta.tool_calls or []:
                events += self._tool(call)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def finish(self) -> list[Event]:
        events = self._close()
        status, incomplete = finish_status(self._finish)
        self.response = self._snapshot(
            status, usage=usage_of(self._usage), incomplete_details=incomplete
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self.response))
        return events

    def fail(self, error: TurnoutError) -> list[Event]:
        """The stream ended by ``error`` after it started: close what is open, fail."""
        events = self._close()
        detail = {"code": error.code or "server_error", "message": error.message}
        self.response = self._snapshot("failed", error=detail)
        events.append(self._event("response.failed", response=self.response))
        return events

    def error(self, error: TurnoutError) -> Event:
        """An ``error`` event (a failure before anything was streamed)."""
        return self._event("error", code=error.code, message=error.message, param=error.param)
