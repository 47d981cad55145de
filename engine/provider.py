"""The one base class a provider plugin implements.

A provider turns a validated ``ChatRequest`` into its vendor's wire format,
sends it with the pooled HTTP client the engine hands it, and turns the answer
back into a ``ChatResponse`` (or a stream of ``ChatChunk``). On failure it
raises ``ProviderError`` with the right ``FailureClass``; retries, fallbacks,
timeouts and accounting are the engine's job, never the provider's.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx2 as httpx
from pydantic import BaseModel

from .errors import FailureClass, ProviderError
from .schema import ChatChunk, ChatRequest, ChatResponse

__all__ = ["Provider", "ProviderCall", "ProviderSettings"]


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A provider instance as the policy configures it.

    :param name: the instance name in routes.yaml (``openai``, ``local``, ...).
    :param type: the registered provider type.
    :param base_url: the policy's base URL, or None for the type's default.
    :param headers: extra headers to send upstream on every call.
    :param options: the type's own options, validated with ``Provider.Options``.
    :param raw_response: include the upstream's raw body in ``extra_fields``.
    """

    name: str
    type: str
    base_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Any = None
    raw_response: bool = False


@dataclass(slots=True)
class ProviderCall:
    """One upstream call: what to send, where, and with what.

    :param request: the caller's validated request.
    :param model: the upstream model name (the part after ``provider/``).
    :param api_key: the key the plan chose for this attempt, or None.
    :param client: the engine's pooled client for this provider instance.
    :param timeout: seconds this attempt may take, or None for no limit.
    """

    request: ChatRequest
    model: str
    api_key: str | None
    client: httpx.AsyncClient
    timeout: float | None = None


class Provider(abc.ABC):
    """Base class of provider plugins; register the class with
    ``turnout_register_providers``.

    ``Options`` (a pydantic model, optional) validates the provider's
    ``options:`` mapping in routes.yaml at load time, so a typo there is
    reported with its file and line like any other policy problem.
    """

    Options: ClassVar[type[BaseModel] | None] = None
    default_base_url: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = False

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

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
        error after it as an interrupted stream.
        """
        raise ProviderError(
            FailureClass.BAD_REQUEST, f"provider type {self.settings.type!r} cannot stream"
        )

    async def aclose(self) -> None:
        """Release anything the provider holds beyond the engine's client."""
