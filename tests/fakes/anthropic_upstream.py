"""A fake Anthropic Messages API upstream that really listens on loopback.

It stands on the fakes' shared base (`tests.fakes.upstream`: the loopback
server, `Fault`, FIFO `script()`, the `x-fake-fault` header) and speaks Anthropic's
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
from tests.fakes.server import Reply as WireReply
from tests.fakes.upstream import Call, KeyedUpstream, RecordedRequest

__all__ = ["FAULT_HEADER", "FakeAnthropic", "Fault", "RecordedRequest"]


class FakeAnthropic(KeyedUpstream):
    """A fake Anthropic upstream on its own thread and event loop.

    Takes `api_key` (the only `x-api-key` accepted; by default any non-empty
    key) and the options every fake takes (`tests.fakes.upstream.Options`).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.cache: set[str] = set()

    def answer(self, call: Call) -> WireReply:
        early = self.early_fault(call)
        if early is not None:
            return early
        if call.path == "/v1/messages/count_tokens" and call.method == "POST":
            return self.count_tokens(call)
        if call.path != "/v1/messages" or call.method != "POST":
            return self.error(call, 404, f"Not found: {call.method} {call.path}")
        try:
            validate_headers(call.headers, self.api_key)
            if call.bad_json:
                raise Rejection(400, "The request body is not valid JSON.")
            validate_messages_request(call.body)
        except Rejection as problem:
            return self.error(call, problem.status, str(problem))
        reply = Reply(call.body, "msg_" + call.ident, self.cache)
        stream = call.body.get("stream") is True
        if call.kind == "error_body_200":  # overloaded mid-stream, as the API does it
            overloaded = error_body(529, request_id="req_" + call.ident)
            if stream:
                return self.send(call, events=reply.events(error_after_start=overloaded), kind="ok")
            return self.send(call, json.dumps(overloaded).encode(), kind="ok")
        if stream:
            return self.send(call, events=reply.events())
        return self.send(call, reply.json())

    def count_tokens(self, call: Call) -> WireReply:
        """``POST /v1/messages/count_tokens``: the request checked like a message
        (without ``max_tokens``), its input counted as the fake's usage counts it."""
        try:
            validate_headers(call.headers, self.api_key)
            if not isinstance(call.body, dict) or "max_tokens" in call.body:
                raise Rejection(400, "max_tokens: Extra inputs are not permitted")
            body = {**call.body, "max_tokens": 1}
            validate_messages_request(body)
        except Rejection as problem:
            return self.error(call, problem.status, str(problem))
        usage = Reply(body, "msg_" + call.ident, set()).usage
        return self.send(call, json.dumps({"input_tokens": usage["input_tokens"]}).encode())

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> WireReply:  # fmt: skip
        ident = call.ident if call is not None else self.new_id()
        payload = error_body(status, message, request_id="req_" + ident)
        return self.reject(call, status, payload, retry_after=retry_after)

    def reset(self) -> None:
        """Forget the script, the recorded requests, the connection count and the cache."""
        super().reset()
        self.cache.clear()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.anthropic_upstream --port N``: the fake on its own
    (benchmarks/http_gateway.py --messages runs it), nothing recorded."""
    import argparse
    import os

    import uvloop

    parser = argparse.ArgumentParser(prog="python -m tests.fakes.anthropic_upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200, help="0 picks a free port")
    args = parser.parse_args(argv)
    fake = FakeAnthropic(record=False, host=args.host, port=args.port,
                         loop_factory=uvloop.new_event_loop)  # fmt: skip

    def ready(port: int) -> None:
        print(f"fake Anthropic upstream on {fake.base_url} (pid {os.getpid()})", flush=True)

    fake.server.run(on_ready=ready)


if __name__ == "__main__":
    main()
