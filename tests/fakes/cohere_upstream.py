"""A fake Cohere v2 chat upstream that really listens on loopback.

It speaks ``POST /v2/chat`` as Cohere's v2 API reference and the official SDK
(cohere-ai/cohere-python) describe it: a ``V2ChatResponse`` (``id``,
``finish_reason``, ``message`` with content blocks, ``tool_plan`` and
``tool_calls``, ``usage`` with ``billed_units`` and ``tokens``), or with
``"stream": true`` Server-Sent Events (``event: <type>`` + ``data: {...}``:
message-start, content-start, content-delta, content-end, tool-plan-delta,
tool-call-start, tool-call-delta, tool-call-end, message-end). Errors are
``{"id": "...", "message": "..."}``. ``POST /v2/embed`` embeds
(``tests.fakes.cohere_embeddings``).

It rejects what the API rejects: no ``Authorization: Bearer`` (or the wrong
key), unknown fields, unknown roles, an assistant turn with neither content
nor tool calls, a tool result whose ``tool_call_id`` answers no earlier tool
call, tools without ``parameters``, a ``tool_choice`` other than REQUIRED/NONE
or without tools, ``p`` outside [0.01, 0.99], images sent to a model without
vision.

Replies echo the last user message ("echo: <text>"); "call_tool" (with tools,
or ``tool_choice: REQUIRED``) makes the model call the first tool and
"call_two_tools" call it twice; "generation_error" ends the generation with
``finish_reason: ERROR``. Faults are the shared ones (``tests.fakes.upstream``),
with Cohere error bodies; ``error_body_200`` is a generation that ends in ERROR.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from typing import Any

from tests.fakes.cohere_embeddings import Invalid, embed_answer
from tests.fakes.faults import Fault
from tests.fakes.server import Reply
from tests.fakes.upstream import Call, KeyedUpstream, RecordedRequest

__all__ = ["DEFAULT_KEY", "FakeCohere", "Fault", "RecordedRequest", "cohere_error"]

DEFAULT_KEY = "co-fake-key-0123456789abcdef"
_MESSAGES = {
    400: "invalid request: the request is invalid",
    401: "invalid api token",
    402: "Please add or update your payment method at https://dashboard.cohere.com/billing",
    403: "Forbidden",
    404: "model not found, make sure the correct model ID was used and that you have access "
    "to the model.",
    422: "unprocessable entity",
    429: "You are using a Trial key, which is limited to 10 API calls / minute. You can "
    "continue to use the Trial key for free or upgrade to a Production key with higher rate "
    "limits at 'https://dashboard.cohere.com/api-keys'.",
    498: "invalid token",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable",
    504: "gateway timeout",
}
_FIELDS = {
    "model", "messages", "tools", "strict_tools", "documents", "citation_options",
    "response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed",
    "frequency_penalty", "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking",
    "priority", "stream",
}  # fmt: skip
_PIECES = re.compile(r"\s*\S+|\s+$").findall
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def cohere_error(code: int, message: str | None = None) -> dict[str, Any]:
    """Cohere's error body for an HTTP status."""
    return {"id": str(uuid.uuid4()), "message": message or _MESSAGES.get(code, f"HTTP {code}")}


class _Invalid(Exception):
    pass


def _json(value: Any) -> bytes:
    return _dumps(value).encode()


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: ".encode() + _json(payload) + b"\n\n"


def _validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise _Invalid("the request body must be a JSON object")
    for name in body:
        if name not in _FIELDS:
            raise _Invalid(f"unknown field: parameter '{name}' is not a valid field")
    for name in ("model", "messages"):
        if name not in body:
            raise _Invalid(f"missing required field '{name}'")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages must not be empty")
    vision = "vision" in str(body["model"])
    calls: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            raise _Invalid(f"{where}: role must be one of system, user, assistant, tool")
        content = message.get("content")
        if role == "user":
            if isinstance(content, list):
                for block in content:
                    if block.get("type") == "image_url":
                        if not vision:
                            raise _Invalid(
                                f"{where}: image content is not supported for this model"
                            )
                        if not (block.get("image_url") or {}).get("url"):
                            raise _Invalid(f"{where}: image_url.url is required")
                    elif block.get("type") != "text":
                        raise _Invalid(f"{where}: invalid content type '{block.get('type')}'")
            elif not isinstance(content, str):
                raise _Invalid(f"{where}: content is required")
        elif role == "assistant":
            unknown = set(message) - {"role", "content", "tool_calls", "tool_plan", "citations"}
            if unknown:
                raise _Invalid(f"{where}: unknown field '{sorted(unknown)[0]}'")
            if not message.get("content") and not message.get("tool_calls"):
                raise _Invalid(f"{where}: assistant message must have content or tool_calls")
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                if not call.get("id") or not function.get("name"):
                    raise _Invalid(f"{where}: tool call must have an id and a function name")
                if not isinstance(function.get("arguments"), str):
                    raise _Invalid(f"{where}: tool call arguments must be a string")
                calls.add(call["id"])
        elif role == "tool":
            if message.get("tool_call_id") not in calls:
                raise _Invalid(
                    f"{where}: tool_call_id '{message.get('tool_call_id')}' does not match any previous tool call"
                )
            if not isinstance(content, str | list):
                raise _Invalid(f"{where}: content is required")
        elif not isinstance(content, str | list):
            raise _Invalid(f"{where}: content is required")
    tools = body.get("tools")
    for i, tool in enumerate(tools or []):
        function = tool.get("function") or {}
        if tool.get("type") != "function" or not function.get("name"):
            raise _Invalid(f"tools[{i}]: type must be function and the function needs a name")
        if not isinstance(function.get("parameters"), dict):
            raise _Invalid(f"tools[{i}].function.parameters is required")
    choice = body.get("tool_choice")
    if choice is not None:
        if choice not in ("REQUIRED", "NONE"):
            raise _Invalid("tool_choice must be one of REQUIRED, NONE")
        if not tools:
            raise _Invalid("tool_choice requires the tools parameter")
    if "p" in body and not 0.01 <= body["p"] <= 0.99:
        raise _Invalid("p must be between 0.01 and 0.99")
    if len(body.get("stop_sequences") or []) > 5:
        raise _Invalid("stop_sequences can have at most 5 elements")
    fmt = body.get("response_format")
    if fmt is not None and fmt.get("type") not in ("text", "json_object"):
        raise _Invalid("response_format.type must be one of text, json_object")


class _Reply:
    def __init__(self, body: dict[str, Any], ident: str, cached_tokens: int | None) -> None:
        self.body = body
        self.id = ident
        self.cached_tokens = cached_tokens
        messages = body["messages"]
        last = messages[-1]
        if last["role"] == "user":
            content = last["content"]
            if isinstance(content, str):
                self.text = content
            else:
                self.text = " ".join(b["text"] for b in content if b["type"] == "text")
                images = [b for b in content if b["type"] == "image_url"]
                if images:
                    self.text += f" [{len(images)} image{'s' if len(images) > 1 else ''}]"
        else:
            results = [m["content"] for m in messages if m["role"] == "tool"]
            self.text = "result " + _dumps(results)
        self.prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
        tools = body.get("tools") or []
        wanted = "call_tool" in self.text or "call_two_tools" in self.text
        if body.get("tool_choice") == "REQUIRED":
            wanted = True
        self.calls: list[dict[str, Any]] = []
        if tools and wanted and body.get("tool_choice") != "NONE" and last["role"] == "user":
            name = tools[0]["function"]["name"]
            for n in range(2 if "call_two_tools" in self.text else 1):
                self.calls.append({
                    "id": f"{name}_{secrets.token_hex(6)}", "type": "function",
                    "function": {"name": name, "arguments": _dumps({"query": self.text, "n": n})},
                })  # fmt: skip
        self.plan = f"I will use {tools[0]['function']['name']}." if self.calls else ""
        self.finish = "TOOL_CALL" if self.calls else "COMPLETE"
        reply = "echo: " + self.text
        if (body.get("response_format") or {}).get("type") == "json_object":
            reply = _dumps({"echo": self.text})
        for stop in body.get("stop_sequences") or []:
            if stop in reply:
                reply, self.finish = reply[: reply.index(stop)], "STOP_SEQUENCE"
        self.pieces: list[str] = [] if self.calls else _PIECES(reply)
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit < len(self.pieces):
            del self.pieces[limit:]
            self.finish = "MAX_TOKENS"
        if "generation_error" in self.text:
            self.finish = "ERROR"

    def usage(self) -> dict[str, Any]:
        output = len(self.pieces) + 10 * len(self.calls)
        usage: dict[str, Any] = {
            "billed_units": {"input_tokens": self.prompt_tokens, "output_tokens": output},
            "tokens": {"input_tokens": self.prompt_tokens + 200, "output_tokens": output + 2},
        }
        if self.cached_tokens is not None:
            usage["cached_tokens"] = self.cached_tokens
        return usage

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if self.calls:
            message["tool_plan"] = self.plan
            message["tool_calls"] = self.calls
        else:
            message["content"] = [{"type": "text", "text": "".join(self.pieces)}]
        return {
            "id": self.id,
            "message": message,
            "finish_reason": self.finish,
            "usage": self.usage(),
        }

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {"type": "message-start", "id": self.id,
             "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "",
                                   "tool_calls": [], "citations": []}}},
        ]  # fmt: skip
        if self.calls:
            for piece in _PIECES(self.plan):
                events.append(
                    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}
                )
            for index, call in enumerate(self.calls):
                start = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                events.append({"type": "tool-call-start", "index": index,
                               "delta": {"message": {"tool_calls": start}}})  # fmt: skip
                arguments = call["function"]["arguments"]
                for part in (arguments[:5], arguments[5:]):
                    events.append({"type": "tool-call-delta", "index": index,
                                   "delta": {"message": {"tool_calls": {"function": {"arguments": part}}}}})  # fmt: skip
                events.append({"type": "tool-call-end", "index": index})
        else:
            events.append({"type": "content-start", "index": 0,
                           "delta": {"message": {"content": {"type": "text", "text": ""}}}})  # fmt: skip
            for piece in self.pieces:
                events.append({"type": "content-delta", "index": 0,
                               "delta": {"message": {"content": {"text": piece}}}})  # fmt: skip
            events.append({"type": "content-end", "index": 0})
        end: dict[str, Any] = {"finish_reason": self.finish, "usage": self.usage()}
        if self.finish == "ERROR":
            end["error"] = "an internal error occurred during generation"
        events.append({"type": "message-end", "delta": end})
        return events


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


class FakeCohere(KeyedUpstream):
    """A fake Cohere v2 API on its own thread and event loop.

    Takes `api_key` (the only key accepted, `DEFAULT_KEY` unless given; None
    accepts any) and the options every fake takes (`tests.fakes.upstream.Options`).
    """

    default_key = DEFAULT_KEY
    cached_tokens: int | None = None  # reported as usage.cached_tokens when set

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def answer(self, call: Call) -> Reply:
        early = self.early_fault(call)
        if early is not None:
            return early
        if call.path not in ("/v2/chat", "/v2/embed") or call.method != "POST":
            return self.error(call, 404, f"route not found: {call.method} {call.target}")
        auth = call.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return self.error(call, 401, "no api key supplied")
        if self.api_key is not None and auth[7:].strip() != self.api_key:
            return self.error(call, 401, "invalid api token")
        if call.bad_json:
            return self.error(
                call, 400, "invalid request: could not parse the request body as JSON"
            )
        if call.path == "/v2/embed":
            return self._embed(call)
        body = call.body
        try:
            _validate(body)
        except _Invalid as exc:
            return self.error(call, 400, f"invalid request: {exc}")
        if not str(body["model"]).startswith(("command", "c4ai")):
            return self.error(call, 404, f"model '{body['model']}' not found, make sure the correct "
                              "model ID was used and that you have access to the model.")  # fmt: skip
        reply = _Reply(body, call.ident, self.cached_tokens)
        failed = call.kind == "error_body_200"  # the generation fails inside a 200
        if not body.get("stream"):
            if failed:
                reply.finish = "ERROR"
            return self.send(call, _json(reply.response()), kind="ok" if failed else None)
        if failed:
            end = {
                "type": "message-end",
                "delta": {"error": "internal error", "finish_reason": "ERROR"},
            }
            return self.send(call, events=[_event(end)], kind="ok")
        return self.send(call, events=[_event(e) for e in reply.events()])

    def _embed(self, call: Call) -> Reply:
        try:
            answer = embed_answer(call.body)
        except Invalid as exc:
            return self.error(call, 400, f"invalid request: {exc}")
        except LookupError:
            model = call.body["model"]
            return self.error(call, 404, f"model '{model}' not found, make sure the correct "
                              "model ID was used and that you have access to the model.")  # fmt: skip
        if call.kind == "error_body_200":
            return self.send(call, _json({"id": call.ident, "message": "internal error"}))
        return self.send(call, _json(answer))

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> Reply:  # fmt: skip
        return self.reject(call, status, cohere_error(status, message), retry_after=retry_after)

    def usage(self, *, cached_tokens: int | None = None) -> None:
        """Report ``usage.cached_tokens`` in every reply."""
        self.cached_tokens = cached_tokens

    def reset(self) -> None:
        super().reset()
        self.usage()
