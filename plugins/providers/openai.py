"""The built-in ``openai`` provider: OpenAI chat completions, and every server
that speaks them (vLLM, Ollama, llama.cpp, Groq, Together, ...) through
``base_url``.

The request is already in OpenAI format, so the provider only swaps the model
name, sends it, and validates the answer into the engine's schema. Streams
always ask the upstream for a final usage chunk (unless the caller chose
``stream_options.include_usage`` itself), so cost can be settled; see
``OpenAIProvider.stream``.
"""

from __future__ import annotations

import base64
import json
import sys
from array import array
from collections.abc import AsyncIterator
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from turnout import provider_api as api

__all__ = ["OpenAIOptions", "OpenAIProvider"]


class OpenAIOptions(BaseModel):
    """``options:`` of an ``openai`` provider in routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream_usage: bool = True
    """Add ``stream_options.include_usage: true`` to streams whose caller did
    not set it. Turn off only for a server that rejects ``stream_options``;
    streamed requests to it are then not costed."""


class OpenAIProvider(api.TranslatingProvider):
    """Chat completions against any OpenAI-compatible ``base_url``.

    Headers: the policy's ``headers``, then ``Authorization: Bearer <key>``
    when the attempt has a key (the key wins over a configured
    ``Authorization``). Timeouts: the client's, each capped at what the
    attempt has left (``call.timeout``).
    """

    Options = OpenAIOptions
    default_base_url = "https://api.openai.com/v1"
    requires_api_key = True
    price_provider = "openai"
    stream_end = "[DONE]"

    native_optional = frozenset({"completions"})
    native_end = "done"

    def __init__(self, settings: api.ProviderSettings) -> None:
        super().__init__(settings)
        self._stream_usage = self.options.stream_usage
        self._url = f"{self.base_url}/chat/completions"
        self._embeddings_url = f"{self.base_url}/embeddings"
        cls = type(self)
        self._relays_bytes = all(
            getattr(cls, name) is getattr(OpenAIProvider, name)
            for name in ("stream", "events", "decode_event", "translator")
        )
        """The upstream's events are OpenAI chunks as it wrote them (no subclass
        reads them its own way), so ``stream_events`` can pass them on."""

    def native_url(self, call: api.ProviderCall, surface: str) -> str:
        """``{base_url}/completions`` for legacy completions, when the policy says
        the upstream offers them (``native: [completions]``: vLLM, Ollama, ...)."""
        return f"{self.base_url}/{surface}"

    # Hook points for OpenAI-compatible vendors (presets, Azure): each is
    # called once per upstream call; the defaults are plain OpenAI.

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        """The URL to POST one call to (Azure puts the deployment in the path)."""
        return self._url

    def adapt_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON body to send, after ``stream``/``stream_options`` are settled;
        override to adjust a vendor's quirks (field names, enum values)."""
        return body

    def request_body(self, call: api.ProviderCall, *, stream: bool) -> Any:
        """The caller's request with the upstream model; without streaming,
        ``stream`` and ``stream_options`` are removed. Streams ask for a final
        usage chunk (``stream_options.include_usage: true``) unless the caller
        set ``include_usage`` either way, so the engine can settle cost; that
        chunk is yielded like any other, and the engine drops it for callers
        that did not ask."""
        body = call.request.upstream_body(call.model)
        if not stream:
            body.pop("stream", None)
            body.pop("stream_options", None)  # OpenAI rejects it without stream
            return self.adapt_body(body)
        body["stream"] = True
        if self._stream_usage:
            stream_options = body.get("stream_options")
            if stream_options is None:
                body["stream_options"] = {"include_usage": True}
            elif "include_usage" not in stream_options:
                stream_options["include_usage"] = True
        return self.adapt_body(body)

    async def chat_raw(self, call: api.ProviderCall) -> api.RawChatResponse:
        """Send one non-streaming request; the answer as received, parsed on demand.

        Reading ``.response`` validates it (a malformed body, or an ``error``
        in a 2xx body, raises ``ProviderError``) and fills ``extra_fields``.
        """
        reply = await self.send(call, self.build(call, stream=False))
        secret = call.api_key
        raw_response = self.raw_response

        def parse(content: bytes) -> api.ChatResponse:
            try:
                result = api.ChatResponse.model_validate_json(content)
            except ValidationError as exc:
                raise _malformed(content, exc, "a chat completion", secret) from None
            if result.model_extra and result.model_extra.get("error"):
                raise _embedded_error(result.model_extra, secret)
            # extra_fields is turnout's namespace: never pass on an upstream gateway's.
            result.extra_fields = (
                api.ExtraFields(raw_response=json.loads(content)) if raw_response else None
            )
            return result

        return api.RawChatResponse(reply.content, parse)

    async def chat(self, call: api.ProviderCall) -> api.ChatResponse:
        """Send one non-streaming request (``stream`` and ``stream_options`` removed).

        The response's ``extra_fields`` is None, or holds only ``raw_response``
        (the upstream's JSON) when the policy asks for it.
        """
        return (await self.chat_raw(call)).response

    def embeddings_url(self, call: api.ProviderCall) -> str:
        """The URL to POST one embeddings call to (Azure puts the deployment in the path)."""
        return self._embeddings_url

    async def embeddings(
        self, call: api.ProviderCall, request: api.EmbeddingsRequest
    ) -> api.Embeddings:
        """``POST /embeddings`` with the caller's fields (turnout's own removed),
        asking for floats whatever the caller's ``encoding_format`` (not every
        compatible server writes base64; the gateway encodes it)."""
        body = request.model_dump(exclude_none=True, exclude=_NOT_UPSTREAM)
        body["model"] = call.model
        body["encoding_format"] = "float"
        upstream = api.UpstreamRequest(
            self.embeddings_url(call),
            pydantic_core.to_json(self.adapt_body(body)),
            self.request_headers(call, stream=False),
            timeout=call.timeout,
        )
        reply = await self.send(call, upstream)
        return read_embeddings(reply.content, len(request.inputs), call.api_key)

    def decode_event(
        self, event: api.ServerSentEvent, call: api.ProviderCall
    ) -> tuple[str, Any] | None:
        """The chunk's JSON text as sent (the translator validates it in one step);
        ``[DONE]`` ends the stream; an ``error`` event raises."""
        data = event.data
        if data.startswith("[DONE]"):
            return "done", data
        if event.event == "error":
            raise _error_event(data, call.api_key)
        return (event.event, data) if data else None

    def translator(self, call: api.ProviderCall, reply: api.StreamReply) -> _Chunks:
        return _Chunks(call.api_key)

    def stream_events(
        self, call: api.ProviderCall, relay: api.ChunkRelay
    ) -> AsyncIterator[api.RelayedEvents]:
        """The upstream's events passed on as they came, one ``RelayedEvents`` per
        read. Only the first chunk and the events ``relay`` must look into
        (usage, a finish, an error, ``extra_fields``, a secret) are validated
        as ``stream`` validates every chunk; ``[DONE]`` and error events end
        the stream as there."""
        if not self._relays_bytes:
            return super().stream_events(call, relay)
        return self._relayed(call, relay)

    async def _relayed(
        self, call: api.ProviderCall, relay: api.ChunkRelay
    ) -> AsyncIterator[api.RelayedEvents]:
        request = self.build(call, stream=True)
        events = _Events(relay, call.api_key)
        splitter = api.EventSplitter()
        with self.stream_failures(call):
            async with call.upstream.stream(request) as reply:
                await self._check_stream(reply, call)
                chunks = reply.chunks()
                try:
                    async for data in chunks:
                        out = events.feed(splitter.feed(data))
                        if out is not None:
                            yield out
                        if events.error is not None:
                            raise events.error
                        if events.finished:
                            await api.drain(chunks)
                            break
                finally:
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()
                if not events.finished:
                    raise api.ProviderError(
                        api.FailureClass.CONNECTION, f"stream ended before {self.stream_end}"
                    )


class _Events:
    """One relayed stream's events: plain chunks passed on as bytes, the rest
    read by ``_Chunks`` and given to the relay parsed."""

    __slots__ = ("_chunks", "_relay", "_secret", "error", "finished", "started")

    def __init__(self, relay: api.ChunkRelay, secret: str | None) -> None:
        self._relay = relay
        self._secret = secret
        self._chunks = _Chunks(secret)
        self.finished = False
        self.started = False
        self.error: api.ProviderError | None = None
        """What an event reported: raise it once the events before it are sent."""

    def feed(self, events: list[bytes]) -> api.RelayedEvents | None:
        """The events of one read; ``error`` is set when one of them reported an
        error (the events before it are returned, the rest dropped)."""
        batch = api.EventBatch()
        try:
            self._feed(events, batch)
        except api.ProviderError as exc:
            self.error = exc
        return batch.relayed() if batch else None

    def _feed(self, events: list[bytes], batch: api.EventBatch) -> None:
        relay = self._relay
        index, count = 0, len(events)
        unchecked = 0  # events before it are in no run (each is looked at once)
        while index < count:
            if self.started and index >= unchecked:
                end, plain = self._run(events, index)
                if plain:  # plain chunks, checked together: passed on in one piece
                    relay.add_bytes(b"\n\n".join(events[index:end]), batch)
                    index = end
                    continue
                unchecked = end
            event = events[index]
            index += 1
            if event.startswith(b"data: ") and b"\n" not in event:
                name, data, plain = "message", event[6:], True
            elif not event:
                continue
            else:
                name, data = api.event_fields(event)
                plain = False
            if data.startswith(b"[DONE]"):
                self.finished = True
                return
            if name == "error":
                raise _error_event(data.decode("utf-8", "replace"), self._secret)
            if not data:
                continue
            if plain and self.started and _plain(data) and not relay.holds_secret(data):
                relay.add_bytes(event, batch)
                continue
            self.started = True
            for chunk in self._chunks.feed(name, data.decode("utf-8", "replace")):
                relay.add(chunk, batch)

    def _run(self, events: list[bytes], start: int) -> tuple[int, bool]:
        """Where the run of plain-looking chunks from ``start`` ends, and whether it
        is two or more plain chunks (``_plain``, its content checks made over the
        run at once)."""
        end = start
        for event in events[start:]:
            if (
                event[:7] != b"data: {"
                or event[-1:] != b"}"
                or b"\n" in event
                or event.find(b'"finish_reason":null', max(len(event) - 96, 0)) < 0
            ):
                break
            end += 1
        if end - start < 2:
            return start + 1, False
        run = b"".join(events[start:end])
        return end, _plain_run(run) and not self._relay.holds_secret(run)


def _plain_run(data: bytes) -> bool:
    """``_plain``'s checks over many events at once: no error, no ``extra_fields``,
    no ``[DONE]``, no usage but ``null`` and no finish reason but ``null``."""
    return not (
        b'"error"' in data
        or b'"extra_fields"' in data
        or b"[DONE]" in data
        or data.count(b'"usage"') != data.count(b'"usage":null')
        or data.count(b'"finish_reason"') != data.count(b'"finish_reason":null')
    )


def _plain(data: bytes) -> bool:
    """Whether a chunk's JSON can be passed on unread: an object that reports
    no error, carries no ``extra_fields``, no usage (or ``"usage":null``), and
    whose every finish reason is ``null`` (so it is no tail to hold back).
    Compact JSON only; any other spelling is read, never misjudged."""
    if data[:1] != b"{" or data[-1:] != b"}" or b'"error"' in data or b'"extra_fields"' in data:
        return False
    finishes = data.count(b'"finish_reason"')
    if not finishes or data.count(b'"finish_reason":null') != finishes:
        return False
    usages = data.count(b'"usage"')
    return not usages or (usages == 1 and b'"usage":null' in data)


class _Chunks:
    """OpenAI's own chunks, validated; ends at ``data: [DONE]``."""

    __slots__ = ("_secret", "finished")

    def __init__(self, secret: str | None) -> None:
        self._secret = secret
        self.finished = False

    def feed(self, name: str, data: str) -> list[api.ChatChunk]:
        if name == "done":
            self.finished = True
            return []
        try:
            chunk = api.ChatChunk.model_validate_json(data)
        except ValidationError as exc:
            raise _malformed(data, exc, "a chat completion chunk", self._secret) from None
        extra = chunk.model_extra
        if extra and extra.get("error"):
            raise _embedded_error(extra, self._secret)
        if chunk.extra_fields is not None:
            chunk.extra_fields = None
        return [chunk]

    def finish(self) -> list[api.ChatChunk]:
        return []


_NOT_UPSTREAM = frozenset({"fallbacks", "metadata", "cache", "encoding_format"})
"""Embeddings request fields that are turnout's (or the gateway's) own."""


class _Embedding(BaseModel):
    index: int = Field(ge=0)
    embedding: list[float] | str


class _Billed(BaseModel):
    prompt_tokens: int = Field(0, ge=0)


class _EmbeddingList(BaseModel):
    data: list[_Embedding]
    model: str = ""
    usage: _Billed | None = None


def read_embeddings(content: bytes, inputs: int, secret: str | None) -> api.Embeddings:
    """An OpenAI embeddings answer, its vectors in input order (base64 ones decoded);
    a body that is not one, or that answers other inputs, is a SERVER_ERROR."""
    try:
        answer = _EmbeddingList.model_validate_json(content)
    except ValidationError as exc:
        raise _malformed(content, exc, "an embeddings list", secret) from None
    items = sorted(answer.data, key=lambda item: item.index)
    if [item.index for item in items] != list(range(inputs)):
        raise api.ProviderError(
            api.FailureClass.SERVER_ERROR,
            f"upstream answered embeddings for indexes other than the {inputs} inputs",
        )
    vectors = [
        _floats(item.embedding) if isinstance(item.embedding, str) else item.embedding
        for item in items
    ]
    tokens = answer.usage.prompt_tokens if answer.usage is not None else 0
    return api.Embeddings(vectors, tokens, answer.model)


def _floats(encoded: str) -> list[float]:
    """Base64 little-endian float32, as OpenAI writes it."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        raw = b"-"
    if len(raw) % 4:
        raise api.ProviderError(
            api.FailureClass.SERVER_ERROR, "upstream answered an embedding that is not float32"
        )
    values = array("f", raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _malformed(
    content: bytes | str, exc: ValidationError, expected: str, secret: str | None
) -> api.ProviderError:
    """The error for a 2xx body (or stream payload) that is not what it should be."""
    try:
        payload = json.loads(content)
    except ValueError:
        return api.ProviderError(
            api.FailureClass.SERVER_ERROR, f"upstream answered with invalid JSON, not {expected}"
        )
    error = api.error_object(payload)
    if error is not None:
        return api.error_from_payload(error, secret=secret)
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return api.ProviderError(
        api.FailureClass.SERVER_ERROR,
        f"upstream answered with JSON that is not {expected} ({where}: {first['msg']})",
    )


def _embedded_error(payload: dict[str, Any], secret: str | None) -> api.ProviderError:
    error = api.error_object(payload) or {"message": "upstream reported an error"}
    return api.error_from_payload(error, secret=secret)


def _error_event(data: str, secret: str | None) -> api.ProviderError:
    try:
        error = api.error_object(json.loads(data))
    except ValueError:
        error = None
    if error is None:
        error = {"message": f"upstream sent an error event: {data}"}
    return api.error_from_payload(error, secret=secret)


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``openai`` provider type."""
    register("openai", OpenAIProvider)
