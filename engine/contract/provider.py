"""The one base class a provider plugin implements.

A provider turns a validated ``ChatRequest`` into its vendor's wire format,
sends it as bytes through the ``Upstream`` the engine hands it
(``turnout.upstream.interface``), and turns the answer
back into a ``ChatResponse`` (or a stream of ``ChatChunk``). On failure it
raises ``ProviderError`` with the right ``FailureClass``; retries, fallbacks,
timeouts and accounting are the engine's job, never the provider's.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import httpx2 as httpx
from pydantic import BaseModel
from turnout.errors import FailureClass, ProviderError
from turnout.upstream.interface import HttpxUpstream, Upstream
from turnout.wire.chat import ChatChunk, ChatRequest, ChatResponse
from turnout.wire.embeddings import Embeddings, EmbeddingsRequest
from turnout.wire.relay import ChunkRelay, RelayedEvents

__all__ = ["NativeEvent", "Provider", "ProviderCall", "ProviderSettings", "RawChatResponse"]


@dataclass(frozen=True, slots=True)
class NativeEvent:
    """One server-sent event of a native stream: its name, its data as the
    provider's ``decode_event`` gives it (a decoded JSON object for most
    vendors, the chunk's text for OpenAI's), and the data's text as the upstream
    sent it (what a passthrough relays)."""

    name: str
    data: Any
    raw: str


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A provider instance as the policy configures it.

    :param name: the instance name in routes.yaml (``openai``, ``local``, ...).
    :param type: the registered provider type.
    :param base_url: the policy's base URL, or None for the type's default.
    :param headers: extra headers to send upstream on every call.
    :param options: the type's own options: an instance of ``Provider.Options``
        when the type declares one (validated at load time), else the raw dict.
    :param raw_response: include the upstream's raw body in ``extra_fields``.
    """

    name: str
    type: str
    base_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Any = None
    raw_response: bool = False
    native: frozenset[str] = frozenset()
    """Surfaces the policy says this instance's upstream serves itself
    (``native:``), beyond the type's ``native_surfaces``."""


NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ProviderCall:
    """One upstream call: what to send, where, and with what.

    :param request: the caller's validated request.
    :param model: the upstream model name (the part after ``provider/``).
    :param api_key: the key the plan chose for this attempt, or None.
    :param client: the engine's pooled client for this provider instance;
        built on first use, so providers that never touch the network
        (the mock) never pay for one. Providers send through ``upstream``,
        which speaks bytes (over this client unless ``upstream`` or
        ``upstream_factory`` says otherwise).
    :param timeout: seconds left of the route's total timeout, or None for no
        limit. The engine enforces it; a provider may use it to cap its HTTP
        timeouts, but must not replace the client's connect and read timeouts
        with it (a dead upstream should fail fast and let the engine fall back).
    :param headers: headers for this call only, from the
        ``turnout_upstream_headers`` hook (a W3C ``traceparent``); a provider
        sends them after its own and before its key.
    """

    __slots__ = (
        "_client",
        "_client_factory",
        "_upstream",
        "_upstream_factory",
        "api_key",
        "headers",
        "model",
        "request",
        "timeout",
    )

    def __init__(
        self,
        request: ChatRequest,
        model: str,
        api_key: str | None,
        client: httpx.AsyncClient | None = None,
        timeout: float | None = None,
        *,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
        upstream: Upstream | None = None,
        upstream_factory: Callable[[], Upstream] | None = None,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> None:
        if client is None and client_factory is None and upstream is None:
            raise TypeError("ProviderCall needs an upstream, a client or a client_factory")
        self.request = request
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.headers = headers
        self._client = client
        self._client_factory = client_factory
        self._upstream = upstream
        self._upstream_factory = upstream_factory

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            if self._client_factory is None:
                raise TypeError("this ProviderCall was given an upstream, not an HTTP client")
            self._client = self._client_factory()
        return self._client

    @property
    def upstream(self) -> Upstream:
        """Where to send this call's bytes (``turnout.upstream.interface``)."""
        if self._upstream is None:
            factory = self._upstream_factory
            self._upstream = factory() if factory is not None else HttpxUpstream(self.client)
        return self._upstream


class RawChatResponse:
    """An OpenAI-format answer as the upstream sent it, parsed on first use.

    A provider whose upstream already speaks OpenAI's format returns this from
    ``chat_raw``: a caller that only passes the bytes on reads ``content``;
    one that needs the model (hooks, usage) reads ``response``, which runs
    ``parse`` once (and raises its ``ProviderError`` if the body is wrong).

    :param content: the body, as received.
    :param parse: builds the ``ChatResponse`` from ``content``.
    """

    __slots__ = ("_parse", "_response", "content")

    def __init__(self, content: bytes, parse: Callable[[bytes], ChatResponse]) -> None:
        self.content = content
        self._parse = parse
        self._response: ChatResponse | None = None

    @property
    def parsed(self) -> bool:
        """Whether ``response`` was built yet."""
        return self._response is not None

    @property
    def response(self) -> ChatResponse:
        if self._response is None:
            self._response = self._parse(self.content)
        return self._response


class Provider(abc.ABC):
    """Base class of provider plugins; register the class with
    ``turnout_register_providers``.

    ``Options`` (a pydantic model, optional) validates the provider's
    ``options:`` mapping in routes.yaml at load time, so a typo there is
    reported with its file and line like any other policy problem.
    Constructors must do no I/O: the engine builds providers while it
    compiles a policy, and may build and drop several during a reload.

    ``self.options`` is the validated ``Options`` instance (the policy loader
    validated it; settings built by hand are validated here, once), or the
    raw ``settings.options`` for a type without ``Options``.
    """

    Options: ClassVar[type[BaseModel] | None] = None
    default_base_url: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = False
    price_provider: ClassVar[str | None] = None
    """The genai-prices provider id whose price table this type bills by."""
    free: ClassVar[bool] = False
    """True for types that never bill (the mock provider): every model costs 0."""
    native_surfaces: ClassVar[frozenset[str]] = frozenset()
    """Inbound surfaces this type's upstream speaks itself (``"messages"``,
    ``"messages.count_tokens"``): a request on one of them is sent as the caller
    wrote it (``native`` / ``native_stream``) instead of translated to chat."""
    native_optional: ClassVar[frozenset[str]] = frozenset()
    """Surfaces the type can send natively when the policy says its upstream
    offers them (``native: [completions]`` for a vLLM ``base_url``)."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        options = settings.options
        model = type(self).Options
        if model is not None and not isinstance(options, model):
            options = model.model_validate(options or {})
        self.options: Any = options

    @property
    def base_url(self) -> str:
        url = self.settings.base_url or self.default_base_url
        if not url:
            raise ProviderError(FailureClass.BAD_REQUEST, f"{self.settings.name}: no base_url")
        return url.rstrip("/")

    @abc.abstractmethod
    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one non-streaming request; return the response or raise ProviderError."""

    def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one streaming request; yield OpenAI-format chunks or raise ProviderError.

        Implement as an ``async def`` generator. The engine treats an error raised
        before the first chunk as a failed attempt (and may fall back), and an
        error after it as an interrupted stream. Yield a final usage-only chunk
        (``choices: []``) whenever usage is known, asked for or not: the engine
        settles cost from it, and drops it for callers that did not set
        ``stream_options.include_usage``.
        """
        raise ProviderError(
            FailureClass.BAD_REQUEST, f"provider type {self.settings.type!r} cannot stream"
        )

    def stream_events(self, call: ProviderCall, relay: ChunkRelay) -> AsyncIterator[RelayedEvents]:
        """``stream``, as the caller's Server-Sent Events bytes (the gateway's relay
        of a route that needs no parsed chunks): one ``RelayedEvents`` per chunk,
        by ``relay``'s rules. A provider whose upstream writes OpenAI chunks may
        override it to pass the upstream's events on as they came, one
        ``RelayedEvents`` per read, reading only the events ``relay`` must
        (same errors, same first-chunk rule as ``stream``)."""
        return relay.relay(self.stream(call))

    async def embeddings(self, call: ProviderCall, request: EmbeddingsRequest) -> Embeddings:
        """Embed ``request``'s inputs with ``call.model``; one vector per input, in order.

        ``request.dimensions`` asks for shorter vectors (a provider that cannot
        honour it raises ``BAD_REQUEST``); the vectors are floats whatever
        ``encoding_format`` the caller chose (the surface encodes them). The
        default: this type offers no embeddings, a ``NOT_FOUND`` failure, so
        the route falls back to its next target.
        """
        raise ProviderError(
            FailureClass.NOT_FOUND,
            f"provider type {self.settings.type!r} does not offer embeddings",
        )

    def output_ceiling(self, request: ChatRequest, model: str) -> int | None:
        """The most output tokens a request to ``model`` can be billed for, as this
        provider will send it: a budget's hold and a route's cost cap cover this.
        None: no limit is sent (the model's own output limit applies). Override
        when the upstream request carries more than the caller's ``output_limit``
        (a default ``max_tokens``, room raised for a thinking budget)."""
        return request.output_limit

    def speaks(self, surface: str) -> bool:
        """Whether requests on ``surface`` go to this upstream as written."""
        return surface in type(self).native_surfaces or surface in self.settings.native

    async def native(self, call: ProviderCall, surface: str, body: bytes) -> Any:
        """Send ``body`` (the caller's JSON, with the upstream model) to the
        upstream's own ``surface`` endpoint; return its decoded JSON answer or
        raise ProviderError, classified as for chat. Only called for a surface
        the provider ``speaks``."""
        raise ProviderError(
            FailureClass.BAD_REQUEST,
            f"provider type {self.settings.type!r} does not speak {surface} natively",
        )

    def native_stream(
        self, call: ProviderCall, surface: str, body: bytes
    ) -> AsyncIterator[NativeEvent]:
        """Stream ``body`` to the upstream's own ``surface`` endpoint; yield its
        events as sent. An error event before the first one is yielded raises
        ProviderError (so the engine may fall back); a stream that ends before
        the surface's end event raises CONNECTION."""
        raise ProviderError(
            FailureClass.BAD_REQUEST,
            f"provider type {self.settings.type!r} does not stream {surface} natively",
        )

    async def aclose(self) -> None:  # noqa: B027 - optional, most providers hold nothing
        """Release anything the provider holds beyond the engine's client."""
