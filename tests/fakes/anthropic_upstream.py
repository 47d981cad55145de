"""A fake Anthropic Messages API upstream that really listens on loopback.

It shares the fake OpenAI upstream's HTTP server, thread and fault machinery
(`Fault`, FIFO `script()`, the `x-fake-fault` header) and speaks Anthropic's
wire format instead (see `tests.fakes.anthropic_wire`): `POST /v1/messages`
checked like the real API checks it, `Message` JSON or SSE events back, and
Anthropic error bodies. Faults map onto Anthropic's own failures:

- `Fault.status(code)`: that status with Anthropic's error body for it
  (529 `overloaded_error`, 429 `rate_limit_error`, ...), `retry-after` if given;
- `Fault.error_body_200()`: a 200 stream that sends `message_start` and then an
  `error` event with `overloaded_error`, as the API does when it overloads
  mid-stream (a non-streaming request gets the error object in a 200 body);
- the others (delays, resets, truncation, stalls, malformed JSON) as for OpenAI.

    with FakeAnthropic(api_key="sk-ant-test") as fake:
        fake.script(Fault.status(529))
        ... base_url=fake.base_url ...
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.anthropic_wire import (
    Rejection,
    Reply,
    error_body,
    validate_headers,
    validate_messages_request,
)
from tests.fakes.faults import FAULT_HEADER, Fault
from tests.fakes.openai_upstream import FakeOpenAI, RecordedRequest, _Upstream
from tests.fakes.openai_wire import Reply as WireReply
from tests.fakes.openai_wire import deliver, error_reply

__all__ = ["FAULT_HEADER", "FakeAnthropic", "Fault", "RecordedRequest"]


class _AnthropicUpstream(_Upstream):
    """The OpenAI fake's shared state, answering as the Messages API."""

    def __init__(self, upstream: _Upstream, api_key: str | None) -> None:
        super().__init__(upstream.settings)
        self.api_key = api_key
        self.cache: set[str] = set()

    def respond(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, keep_alive: bool
    ) -> WireReply:
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        if self.settings.record:
            self.requests.append(RecordedRequest(method, target, headers, body))
        ident = f"{self._id_prefix}{next(self._ids):016x}"
        options: dict[str, Any] = {
            "request_id": ident,
            "keep_alive": keep_alive,
            "latency": self.settings.latency,
        }
        try:
            fault: Fault | None = self.script.popleft()
        except IndexError:
            spec = headers.get(FAULT_HEADER)
            try:
                fault = Fault.parse(spec) if spec else None
            except ValueError as exc:
                return self._reject(Rejection(400, str(exc)), ident, options)
        if fault is not None and fault.kind == "status":
            payload = error_body(fault.code, request_id="req_" + ident) if fault.body is None else fault.body  # fmt: skip
            fault = Fault.status(fault.code, fault.retry_after, payload)
            return deliver(fault, b"", **options)
        if fault is not None and fault.kind == "reset":
            return deliver(fault, b"", **options)

        path = target.partition("?")[0]
        if path != "/v1/messages" or method != "POST":
            problem = Rejection(404, f"Not found: {method} {path}")
            return self._reject(problem, ident, options)
        try:
            validate_headers(headers, self.api_key)
            if bad_json:
                raise Rejection(400, "The request body is not valid JSON.")
            validate_messages_request(body)
        except Rejection as problem:
            return self._reject(problem, ident, options)
        reply = Reply(body, "msg_" + ident, self.cache)
        stream = body.get("stream") is True
        if fault is not None and fault.kind == "error_body_200":
            overloaded = error_body(529, request_id="req_" + ident)
            if stream:
                events = reply.events(error_after_start=overloaded)
                return deliver(None, b"", events, chunk_delay=self.settings.chunk_delay, **options)
            return deliver(None, json.dumps(overloaded).encode(), **options)
        if stream:
            events = reply.events()
            return deliver(fault, b"", events, chunk_delay=self.settings.chunk_delay, **options)
        return deliver(fault, reply.json(), **options)

    def _reject(self, problem: Rejection, ident: str, options: dict[str, Any]) -> WireReply:
        payload = error_body(problem.status, str(problem), request_id="req_" + ident)
        return error_reply(problem.status, payload, **options)

    def error(self, status: int, message: str) -> WireReply:
        ident = f"{self._id_prefix}{next(self._ids):016x}"
        payload = error_body(status, message, request_id="req_" + ident)
        return error_reply(status, payload, request_id=ident, keep_alive=False)


class FakeAnthropic(FakeOpenAI):
    """A fake Anthropic upstream on its own thread and event loop.

    :param api_key: the only `x-api-key` accepted; None accepts any non-empty key.
    :param latency: seconds (or "50ms") before every response's first byte.
    :param chunk_delay: seconds between SSE events of every stream.
    """

    def __init__(
        self,
        api_key: str | None = None,
        latency: float | str = 0.0,
        *,
        chunk_delay: float | str = 0.0,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(latency, chunk_delay=chunk_delay, record=record, host=host, port=port)
        self._upstream = _AnthropicUpstream(self._upstream, api_key)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, what an Anthropic client takes as base_url."""
        return f"http://{self._host}:{self.port}"

    def reset(self) -> None:
        """Forget the script, the recorded requests, the connection count and the cache."""
        super().reset()
        upstream = self._upstream
        assert isinstance(upstream, _AnthropicUpstream)
        upstream.cache.clear()
