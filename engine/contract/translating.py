"""The base of providers that speak HTTP: one request, one reply, one stream loop.

A ``TranslatingProvider`` subclass says only what is its vendor's own:

- where to send (``request_url``), how to authenticate (``authorize``), what
  to send (``request_body``);
- what the answer means (``translate_reply``) and how a stream's events become
  chunks (``translator``, a ``StreamTranslator``);
- how its errors read (``error_in``, ``error_from_payload``), when they differ
  from the shape most vendors share.

Sending, status checks, JSON decoding, the event loop, draining a finished
stream, transport failures and ``raw_response`` are done here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

import pydantic_core
from turnout.contract.http_errors import (
    classify_error,
    error_from_payload,
    error_from_response,
    error_from_transport,
    error_object,
    parse_retry_after,
)
from turnout.contract.provider import NativeEvent, Provider, ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.upstream.interface import Reply, StreamReply, UpstreamError, UpstreamRequest
from turnout.upstream.sse import MalformedEvents, ServerSentEvent, server_sent_events
from turnout.wire.chat import ChatChunk, ChatResponse, ExtraFields

__all__ = ["DRAIN_SECONDS", "StreamTranslator", "TranslatingProvider", "drain"]

Data_contra = TypeVar("Data_contra", contravariant=True)

# After the end of a stream, how long to wait for the end of the body so the
# connection can go back to the pool instead of being closed.
DRAIN_SECONDS = 0.25


class StreamTranslator(Protocol[Data_contra]):
    """Turns one stream's events into OpenAI ``chat.completion.chunk``s.

    ``feed`` takes each event's name and data (as the provider's
    ``decode_event`` gave it: a JSON object for most vendors) and returns the
    chunks to send, often none; it may raise ``ProviderError`` for an error
    the event reports. ``finished`` turns True at the vendor's end of stream;
    ``finish`` then gives the last chunks (a usage-only chunk, where the
    vendor's usage is only known at the end).
    """

    @property
    def finished(self) -> bool: ...

    def feed(self, name: str, data: Data_contra) -> list[ChatChunk]: ...

    def finish(self) -> list[ChatChunk]: ...


async def drain(events: AsyncIterator[Any]) -> None:
    """Read what is left of a finished stream, briefly, so its connection is reused."""
    with contextlib.suppress(UpstreamError, MalformedEvents, ProviderError, TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in events:
                pass


class TranslatingProvider(Provider):
    """A provider that sends one JSON request per call over HTTP.

    Headers: ``base_headers`` (JSON content type), then the policy's
    ``headers``, then the attempt's key as ``authorize`` puts it (the key wins).
    Timeouts: the upstream client's, each capped at what the attempt has left.
    """

    vendor: ClassVar[str] = "upstream"
    """How messages name the upstream (``Gemini answered with invalid JSON``)."""
    stream_media_type: ClassVar[str] = "text/event-stream"
    """The content type a stream answer must have."""
    stream_end: ClassVar[str] = "its end"
    """What a complete stream ends with, for ``stream ended before ...``."""
    stop_at_end: ClassVar[bool] = True
    """Stop reading once the translator is finished (else read the body to its end)."""
    native_end: ClassVar[str] = ""
    """The event that ends a native stream (``native_stream``), e.g. ``message_stop``."""

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.raw_response = settings.raw_response
        configured = {name.lower(): value for name, value in settings.headers.items()}
        self.headers = self.base_headers(configured)
        self.stream_headers = {**self.headers, "accept": self.stream_media_type}

    # ---- what a subclass says -------------------------------------------

    def base_headers(self, configured: dict[str, str]) -> dict[str, str]:
        """Every call's headers but the key's, from the policy's (lower-case names)."""
        return {"content-type": "application/json", **configured}

    def authorize(self, headers: dict[str, str], key: str) -> dict[str, str]:
        """``headers`` with the attempt's key added (``Authorization: Bearer`` by default)."""
        return {**headers, "authorization": f"Bearer {key}"}

    def request_url(self, call: ProviderCall, *, stream: bool = False) -> str:
        """The URL to send one call to."""
        raise NotImplementedError

    def request_body(self, call: ProviderCall, *, stream: bool) -> Any:
        """The JSON body of one call; raise ``TranslationError`` for what the vendor
        cannot be given."""
        raise NotImplementedError

    def translate_reply(self, call: ProviderCall, payload: Any, reply: Reply) -> ChatResponse:
        """The response for a 2xx answer's decoded JSON ``payload``."""
        raise NotImplementedError

    def translator(self, call: ProviderCall, reply: StreamReply) -> StreamTranslator[Any]:
        """A fresh translator for one stream (``reply``: its status and headers)."""
        raise NotImplementedError

    def error_in(self, payload: Any) -> Mapping[str, Any] | None:
        """The error object in a decoded body or event, or None if it reports none."""
        return error_object(payload)

    def error_from_payload(
        self,
        error: Mapping[str, Any],
        call: ProviderCall,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ProviderError:
        """The ``ProviderError`` for an error object (``error_in``'s): its message
        (key masked, length capped), classed by ``failure_of``, with the wait the
        headers asked for, else ``retry_delay``'s."""
        exc = error_from_payload(error, status=status, retry_after=retry_after, secret=call.api_key)
        exc.failure = self.failure_of(error, status)
        if exc.retry_after is None:
            exc.retry_after = self.retry_delay(error)
        return exc

    def failure_of(self, error: Mapping[str, Any], status: int | None) -> FailureClass:
        """The class of an error object, given the HTTP status if any."""
        return classify_error(status, error)

    def retry_delay(self, error: Mapping[str, Any]) -> float | None:
        """A wait the error object asks for, when the headers ask none."""
        return None

    # ---- the request ------------------------------------------------------

    def request_headers(self, call: ProviderCall, *, stream: bool) -> dict[str, str]:
        """The headers of one call: the provider's, the call's own, then the key."""
        headers = self.stream_headers if stream else self.headers
        if call.headers:
            headers = {**headers, **call.headers}
        return self.authorize(headers, call.api_key) if call.api_key else headers

    def build(self, call: ProviderCall, *, stream: bool) -> UpstreamRequest:
        """The bytes of one call: URL, headers and body."""
        return UpstreamRequest(
            self.request_url(call, stream=stream),
            pydantic_core.to_json(self.request_body(call, stream=stream)),
            self.request_headers(call, stream=stream),
            timeout=call.timeout,
        )

    # ---- errors -----------------------------------------------------------

    def error_from_answer(
        self, status: int, headers: Mapping[str, str], body: bytes, reason: str, call: ProviderCall
    ) -> ProviderError:
        """The ``ProviderError`` for a non-2xx answer, read fully."""
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        error = self.error_in(payload)
        if error is None:  # a proxy's HTML page, an empty body: the status decides
            return error_from_response(status, headers, body, reason=reason, secret=call.api_key)
        return self.error_from_payload(
            error, call, status=status, retry_after=parse_retry_after(headers)
        )

    def not_a_stream(self, content_type: str, body: bytes, call: ProviderCall) -> ProviderError:
        """The ``ProviderError`` for a 2xx answer to a stream request that is no stream."""
        try:
            error = self.error_in(json.loads(body))
        except ValueError:
            error = None
        if error is not None:
            return self.error_from_payload(error, call)
        return ProviderError(
            FailureClass.SERVER_ERROR,
            f"{self.vendor} answered a stream request with "
            f"{content_type or 'no content type'!r}, not {self.stream_media_type}",
        )

    def json_of(self, content: bytes | str, what: str = "") -> Any:
        """Decoded JSON, or a SERVER_ERROR naming the vendor."""
        try:
            return json.loads(content)
        except ValueError:
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"{self.vendor} {what or 'answered with'} invalid JSON"
            ) from None

    # ---- one call -----------------------------------------------------------

    async def send(self, call: ProviderCall, request: UpstreamRequest) -> Reply:
        """Send ``request`` and return its 2xx answer; raise for anything else."""
        try:
            reply = await call.upstream.send(request)
        except UpstreamError as exc:
            raise error_from_transport(exc, secret=call.api_key) from (exc.__cause__ or exc)
        if not reply.is_success:
            raise self.error_from_answer(
                reply.status_code, reply.headers, reply.content, reply.reason_phrase, call
            )
        return reply

    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one non-streaming request; the answer as a ``chat.completion``.

        ``extra_fields`` holds only ``raw_response`` (the vendor's JSON) when
        the policy asks for it.
        """
        reply = await self.send(call, self.build(call, stream=False))
        payload = self.json_of(reply.content)
        if not isinstance(payload, dict):
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"{self.vendor} answered with a non-object"
            )
        error = self.error_in(payload)
        if error is not None:
            raise self.error_from_payload(error, call)
        result = self.translate_reply(call, payload, reply)
        # extra_fields is turnout's namespace: never pass on an upstream's.
        result.extra_fields = ExtraFields(raw_response=payload) if self.raw_response else None
        return result

    # ---- native surfaces ------------------------------------------------------

    def native_url(self, call: ProviderCall, surface: str) -> str:
        """The URL of the upstream's own endpoint for ``surface`` (one of
        ``native_surfaces``)."""
        raise NotImplementedError

    def native_request(
        self, call: ProviderCall, surface: str, body: bytes, *, stream: bool
    ) -> UpstreamRequest:
        return UpstreamRequest(
            self.native_url(call, surface),
            body,
            self.request_headers(call, stream=stream),
            timeout=call.timeout,
        )

    async def native(self, call: ProviderCall, surface: str, body: bytes) -> Any:
        """Send the caller's body as it is; the upstream's JSON object back."""
        reply = await self.send(call, self.native_request(call, surface, body, stream=False))
        payload = self.json_of(reply.content)
        if not isinstance(payload, dict):
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"{self.vendor} answered with a non-object"
            )
        error = self.error_in(payload)
        if error is not None:
            raise self.error_from_payload(error, call)
        return payload

    async def native_stream(
        self, call: ProviderCall, surface: str, body: bytes
    ) -> AsyncIterator[NativeEvent]:
        """Stream the caller's body as it is; the upstream's events back, each
        decoded once (``decode_event``: an error event raises), until
        ``native_end``."""
        request = self.native_request(call, surface, body, stream=True)
        ended = False
        with self.stream_failures(call):
            async with call.upstream.stream(request) as reply:
                await self._check_stream(reply, call)
                async for event in server_sent_events(reply.chunks()):
                    decoded = self.decode_event(event, call)
                    if decoded is None:
                        continue
                    yield NativeEvent(decoded[0], decoded[1], event.data)
                    if decoded[0] == self.native_end:
                        ended = True
                        break
                if not ended:
                    raise ProviderError(
                        FailureClass.CONNECTION, f"stream ended before {self.native_end}"
                    )

    @contextlib.contextmanager
    def stream_failures(self, call: ProviderCall) -> Iterator[None]:
        """A malformed event stream is a SERVER_ERROR, a broken connection its
        transport failure: what both stream loops raise."""
        try:
            yield
        except MalformedEvents as exc:
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"{self.vendor} sent a malformed event stream ({exc})"
            ) from exc
        except UpstreamError as exc:
            raise error_from_transport(exc, secret=call.api_key) from (exc.__cause__ or exc)

    async def _check_stream(self, reply: StreamReply, call: ProviderCall) -> None:
        """Raise for a stream answer that is an error or no event stream."""
        if not reply.is_success:
            body = await reply.read()
            raise self.error_from_answer(
                reply.status_code, reply.headers, body, reply.reason_phrase, call
            )
        content_type = reply.headers.get("content-type", "")
        if not content_type.lower().startswith(self.stream_media_type):
            raise self.not_a_stream(content_type, await reply.read(), call)

    # ---- one stream ----------------------------------------------------------

    def decode_event(self, event: ServerSentEvent, call: ProviderCall) -> tuple[str, Any] | None:
        """``(name, data)`` for the translator, or None to skip the event.

        Default: the data as a JSON object, named by the event's name; an
        event that is not JSON is a SERVER_ERROR, one that reports an error
        (``error_in``) raises it.
        """
        if not event.data:
            return None
        try:
            data = json.loads(event.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"{self.vendor} sent an event that is not JSON"
            )
        error = self.error_in(data)
        if error is not None:
            raise self.error_from_payload(error, call)
        return event.event, data

    async def events(
        self, reply: StreamReply, call: ProviderCall
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """The decoded events of a stream's body (server-sent events by default)."""
        async for event in server_sent_events(reply.chunks()):
            decoded = self.decode_event(event, call)
            if decoded is not None:
                yield decoded

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one streaming request; yield OpenAI chunks as the events arrive.

        A stream that ends before the translator is finished is a CONNECTION
        failure; a malformed event stream a SERVER_ERROR. The upstream answer
        is closed however the iteration ends (consumer stops, cancellation,
        error).
        """
        request = self.build(call, stream=True)
        with self.stream_failures(call):
            async with call.upstream.stream(request) as reply:
                await self._check_stream(reply, call)
                translator = self.translator(call, reply)
                events = self.events(reply, call)
                async with contextlib.aclosing(events):
                    async for name, data in events:
                        for chunk in translator.feed(name, data):
                            yield chunk
                        if self.stop_at_end and translator.finished:
                            await drain(events)
                            break
                if not translator.finished:
                    raise ProviderError(
                        FailureClass.CONNECTION, f"stream ended before {self.stream_end}"
                    )
        for chunk in translator.finish():
            yield chunk
