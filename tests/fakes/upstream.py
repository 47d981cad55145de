"""The base every vendor fake stands on: it opens each request, a vendor answers.

`FakeUpstream` runs a `LoopbackServer` whose handler does what every fake
needs before the vendor's format matters: parse the JSON body, record the
request, give it an id, and take its behaviour (the next scripted `Fault`,
else the one its `x-fake-fault` header names, else none). The vendor fake then
only answers: it implements `answer(call)` and `error(call, status, ...)` (its
own error body) and uses `send` / `reject` to put bytes on the wire.

All fakes take the same keyword-only options (`latency`, `chunk_delay`,
`record`, `host`, `port`, `loop_factory`) plus their own (`api_key`, ...).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import EllipsisType
from typing import Any, NamedTuple, Self, TypedDict, Unpack

from tests.fakes.faults import FAULT_HEADER, Fault, parse_duration
from tests.fakes.server import RESET, LoopbackServer, Reply, Request, body_reply, stream_reply

__all__ = ["SSE", "Call", "FakeUpstream", "KeyedUpstream", "Options", "RecordedRequest"]

SSE = "text/event-stream; charset=utf-8"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Options(TypedDict, total=False):
    """The keyword options every fake takes (see `FakeUpstream`)."""

    latency: float | str
    chunk_delay: float | str
    record: bool
    host: str
    port: int
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None


class RecordedRequest(NamedTuple):
    """A request as the fake received it; `body` is the parsed JSON or None."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True, slots=True)
class Call(Request):
    """One opened request: what came in, parsed, with its id and its fault."""

    body: Any  # the parsed JSON, or None (no body, or `bad_json`)
    bad_json: bool
    ident: str
    fault: Fault | Any | None  # a Fault, or a vendor's own script item

    @property
    def kind(self) -> str:
        """The fault's kind, "ok" when there is none (or it is not a `Fault`)."""
        return self.fault.kind if isinstance(self.fault, Fault) else "ok"

    def but(self, **changes: Any) -> Call:
        return replace(self, **changes)


class FakeUpstream:
    """A vendor fake on its own thread and event loop; subclasses only answer.

    :param latency: seconds (or "50ms") before every response's first byte.
    :param chunk_delay: seconds between the events of every stream.
    :param record: keep `requests` (turn off for long benchmark runs).
    :param port: 0 picks a free port.
    :param loop_factory: the event loop to run (e.g. `uvloop.new_event_loop`).
    """

    #: what follows `http://host:port` in `base_url`
    base_path = ""

    def __init__(
        self,
        *,
        latency: float | str = 0.0,
        chunk_delay: float | str = 0.0,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.latency = parse_duration(latency)
        self.chunk_delay = parse_duration(chunk_delay)
        self.record = record
        self._script: deque[Any] = deque()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self.server = LoopbackServer(
            self.handle, on_error=self._unparsed, host=host, port=port, loop_factory=loop_factory
        )

    # -- what a vendor fake implements

    def answer(self, call: Call) -> Reply:
        """The vendor's reply to an opened request."""
        raise NotImplementedError

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> Reply:  # fmt: skip
        """The vendor's error response for `status` (its default wording when no
        `message`); `call` is None for a request that could not be parsed."""
        raise NotImplementedError

    def new_id(self) -> str:
        """The id of a request, as the vendor shapes them."""
        return f"{self._id_prefix}{next(self._ids):016x}"

    def reply_headers(self, call: Call | None) -> list[str]:
        """Headers every response carries (the vendor's request-id header)."""
        ident = call.ident if call is not None else self.new_id()
        return [f"x-request-id: req_{ident}"]

    def fault_status(self, call: Call, fault: Fault) -> Reply:
        """A scripted `Fault.status`: its body verbatim, else the vendor's error."""
        if fault.body is not None:
            return self.reject(call, fault.code, fault.body, retry_after=fault.retry_after)
        return self.error(call, fault.code, retry_after=fault.retry_after)

    # -- the shared opening: the server's handler

    def handle(self, request: Request) -> Reply:
        body: Any = None
        bad_json = False
        if request.raw:
            try:
                body = json.loads(request.raw)
            except ValueError:
                bad_json = True
        if self.record:
            self._requests.append(
                RecordedRequest(request.method, request.target, request.headers, body)
            )
        call = Call(
            request.method, request.target, request.headers, request.raw, request.keep_alive,
            body, bad_json, self.new_id(), None,
        )  # fmt: skip
        try:
            fault = self._script.popleft()
        except IndexError:
            spec = request.headers.get(FAULT_HEADER)
            try:
                fault = Fault.parse(spec) if spec else None
            except ValueError as exc:
                return self.error(call, 400, str(exc))
        return self.answer(call.but(fault=fault))

    def _unparsed(self, status: int, message: str) -> Reply:
        return self.error(None, status, message)

    # -- what a vendor answers with

    def early_fault(self, call: Call) -> Reply | None:
        """The reply for a status or reset fault (sent before the request is
        looked at further), else None."""
        fault = call.fault
        if not isinstance(fault, Fault):
            return None
        if fault.kind == "status":
            return self.fault_status(call, fault)
        if fault.kind == "reset":
            return Reply([(self.latency, b"")], RESET)
        return None

    def reject(
        self, call: Call | None, status: int, payload: Any, *,
        retry_after: float | str | None = None, headers: list[str] | None = None,
    ) -> Reply:  # fmt: skip
        """An error response; `payload` is JSON-encoded, or str/bytes sent verbatim.
        It closes the connection when the request asked to, or could not be parsed."""
        if isinstance(payload, bytes):
            data = payload
        else:
            data = payload.encode() if isinstance(payload, str) else _dumps(payload).encode()
        extra = self.reply_headers(call) + (headers or [])
        if retry_after is not None:
            extra.append(f"retry-after: {retry_after}")
        keep_alive = call is not None and call.keep_alive
        wait = self.latency if call is not None else 0.0
        return body_reply(status, "application/json", data, extra, wait=wait, keep_alive=keep_alive)

    def send(
        self, call: Call, body: bytes = b"", events: list[bytes] | None = None, *,
        kind: str | None = None, content_type: str = SSE, stall_after: int = 1,
    ) -> Reply:  # fmt: skip
        """A 200: the JSON `body`, or the `events` as a chunked stream, suffering
        the call's fault (or `kind`): delays, malformed JSON, cuts and stalls.
        Status, reset and error-in-200 faults are the vendor's to answer first."""
        fault = call.fault if isinstance(call.fault, Fault) else None
        kind = kind or call.kind
        wait = fault.seconds if fault is not None and fault.kind == "delay" else self.latency
        gap = (
            fault.seconds if fault is not None and fault.kind == "chunk_delay" else self.chunk_delay
        )
        extra = self.reply_headers(call)
        if kind == "malformed_json":
            if events is not None:
                events = [events[0][: len(events[0]) // 2] + b"\n\n", b"data: [DONE]\n\n"]
            else:
                body = body[: len(body) // 2] or b"{"
        if events is None:
            return body_reply(
                200, "application/json", body, extra, fault=kind, wait=wait,
                keep_alive=call.keep_alive,
            )  # fmt: skip
        return stream_reply(
            content_type, events, extra, fault=kind, wait=wait, gap=gap,
            keep_alive=call.keep_alive, stall_after=stall_after,
        )  # fmt: skip

    # -- the public API every fake shares

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        """What the vendor's client takes as base_url."""
        return f"http://{self.server.host}:{self.server.port}{self.base_path}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        return list(self._requests)

    @property
    def connection_count(self) -> int:
        """TCP connections accepted so far (shows whether clients keep them alive)."""
        return self.server.connection_count

    @property
    def abandoned(self) -> int:
        """Requests whose client closed the connection before the whole reply was
        sent (a delayed or stalled reply the client gave up on)."""
        return self.server.abandoned

    def script(self, *faults: Fault | str) -> None:
        """Queue behaviours, FIFO: each is used by one request, then the default."""
        self._script.extend(Fault.parse(f) if isinstance(f, str) else f for f in faults)

    def reset(self) -> None:
        """Forget the script, the recorded requests and the connection counts."""
        self._script.clear()
        self._requests.clear()
        self.server.connection_count = 0
        self.server.abandoned = 0

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        """Abort open connections, close the server, and join its thread."""
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()


class KeyedUpstream(FakeUpstream):
    """A fake whose vendor authenticates with one API key.

    :param api_key: the only key accepted; None accepts any non-empty key.
        Defaults to the class's `default_key`.
    """

    default_key: str | None = None

    def __init__(
        self, *, api_key: str | EllipsisType | None = ..., **options: Unpack[Options]
    ) -> None:
        super().__init__(**options)
        self.api_key = self.default_key if isinstance(api_key, EllipsisType) else api_key
