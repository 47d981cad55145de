"""The built-in ``azure`` provider: Azure OpenAI deployments.

Azure speaks OpenAI's chat-completions format; only the address and the
authentication differ, so this is the ``openai`` provider with another URL and
header:

- ``POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``
  where the deployment is the target's model name (``azure/my-gpt4o``), or,
  with ``api_version: v1``, the version-less ``{base_url}/openai/v1/chat/completions``
  with the deployment as the body's ``model``;
- ``api-key: <key>``, or ``Authorization: Bearer <token>`` with
  ``auth: bearer`` (a Microsoft Entra ID access token).

Prompts or completions blocked by Azure's content filter come back as errors
with ``code: "content_filter"`` (and an ``innererror``), or as a completion
whose every choice ends with ``finish_reason: "content_filter"`` and says
nothing; both are ``FailureClass.CONTENT_FILTER``, so a route can fall back to
another vendor.
"""

from __future__ import annotations

import urllib.parse
from typing import Literal

from pydantic import Field
from turnout import provider_api as api
from turnout.plugins.providers.openai import OpenAIOptions, OpenAIProvider

__all__ = ["DEFAULT_API_VERSION", "AzureOptions", "AzureProvider"]

DEFAULT_API_VERSION = "2024-10-21"
"""The latest GA data-plane inference version of the deployments API."""


class AzureOptions(OpenAIOptions):
    """``options:`` of an ``azure`` provider in routes.yaml."""

    api_version: str = Field(DEFAULT_API_VERSION, min_length=1)
    """The ``api-version`` query parameter (``2024-10-21``, ``2025-04-01-preview``,
    ...), or ``v1`` for Azure's version-less OpenAI v1 API."""
    auth: Literal["api-key", "bearer"] = "api-key"
    """How the key is sent: ``api-key`` header, or ``Authorization: Bearer``
    for a Microsoft Entra ID token."""


class AzureProvider(OpenAIProvider):
    """Chat completions against an Azure OpenAI resource.

    ``base_url`` is the resource endpoint, ``https://<resource>.openai.azure.com``
    (required: there is no default). The target's model is the deployment name.
    """

    native_optional = frozenset[str]()  # Azure's deployment URLs are not OpenAI's /completions

    Options = AzureOptions
    price_provider = "azure"

    def __init__(self, settings: api.ProviderSettings) -> None:
        if not settings.base_url:
            raise ValueError(
                "azure needs base_url: your resource endpoint, "
                "e.g. https://my-resource.openai.azure.com"
            )
        super().__init__(settings)
        options = self.options
        root = self.base_url
        if root.endswith("/openai"):
            root = root[: -len("/openai")]
        self._bearer = options.auth == "bearer"
        self._v1 = options.api_version == "v1"
        self._root = f"{root}/openai/v1/" if self._v1 else f"{root}/openai/deployments/"
        self._version = "?" + urllib.parse.urlencode({"api-version": options.api_version})

    def _address(self, call: api.ProviderCall, operation: str) -> str:
        if self._v1:
            return self._root + operation
        deployment = api.path_segment(call.model, "deployment")
        return f"{self._root}{deployment}/{operation}{self._version}"

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        return self._address(call, "chat/completions")

    def embeddings_url(self, call: api.ProviderCall) -> str:
        return self._address(call, "embeddings")

    def authorize(self, headers: dict[str, str], key: str) -> dict[str, str]:
        if self._bearer:
            return super().authorize(headers, key)
        return {**headers, "api-key": key}

    async def chat(self, call: api.ProviderCall) -> api.ChatResponse:
        """As ``OpenAIProvider.chat``; a completion withheld by the content
        filter (every choice ``content_filter`` and empty) is an error."""
        response = await super().chat(call)
        if _all_filtered(response):
            raise api.ProviderError(
                api.FailureClass.CONTENT_FILTER,
                "the completion was withheld by Azure's content filter",
                code="content_filter",
            )
        return response


def _all_filtered(response: api.ChatResponse) -> bool:
    choices = response.choices
    return bool(choices) and all(
        choice.finish_reason == "content_filter"
        and not choice.message.content
        and not choice.message.tool_calls
        for choice in choices
    )


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``azure`` provider type."""
    register("azure", AzureProvider)
