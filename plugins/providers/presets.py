"""OpenAI-compatible vendors as named provider types: ``type: groq`` instead of a
``base_url``.

Each preset is a small ``OpenAIProvider`` subclass that fixes the vendor's base
URL, whether it needs a key, the genai-prices table it bills by, and its known
departures from OpenAI's request format. Everything else (errors, streaming,
usage) is the ``openai`` provider's. ``base_url`` in the policy still wins, so a
preset can point at a proxy or a self-hosted port.

Streams: the ``openai`` provider adds ``stream_options.include_usage`` so the
upstream reports usage. Presets whose API reference does not list
``stream_options`` default ``stream_usage`` to off; those vendors send usage in
their last chunk anyway (Mistral, Perplexity, Cerebras) or are free local
servers (LM Studio). ``options: {stream_usage: true}`` turns it back on.
"""

from __future__ import annotations

from typing import Any

from turnout.plugins.providers.openai import OpenAIOptions, OpenAIProvider
from turnout.provider_api import RegisterProvider, hookimpl

__all__ = [
    "PRESETS",
    "CerebrasProvider",
    "DeepSeekProvider",
    "FireworksProvider",
    "GroqProvider",
    "LMStudioProvider",
    "MistralProvider",
    "OllamaProvider",
    "OpenRouterOptions",
    "OpenRouterProvider",
    "PerplexityProvider",
    "TogetherProvider",
    "VLLMProvider",
    "XAIProvider",
]


class _NoStreamOptions(OpenAIOptions):
    """Options of a preset whose API does not document ``stream_options``."""

    stream_usage: bool = False


class GroqProvider(OpenAIProvider):
    """Groq (``https://api.groq.com/openai/v1``)."""

    default_base_url = "https://api.groq.com/openai/v1"
    price_provider = "groq"


class MistralProvider(OpenAIProvider):
    """Mistral La Plateforme (``https://api.mistral.ai/v1``).

    Mistral's request schema differs from OpenAI's in a few names, adapted
    here: ``tool_choice: "required"`` is sent as ``"any"``, ``seed`` as
    ``random_seed``, ``max_completion_tokens`` as ``max_tokens``; OpenAI-only
    ``user`` and ``stream_options`` are dropped (usage comes in the last chunk
    without asking).
    """

    Options = _NoStreamOptions
    default_base_url = "https://api.mistral.ai/v1"
    price_provider = "mistral"

    def adapt_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("tool_choice") == "required":
            body["tool_choice"] = "any"
        if "seed" in body:
            body["random_seed"] = body.pop("seed")
        if "max_completion_tokens" in body:
            # the request's output_limit, which budgets hold: it wins over max_tokens
            body["max_tokens"] = body.pop("max_completion_tokens")
        body.pop("user", None)
        body.pop("stream_options", None)
        return body


class DeepSeekProvider(OpenAIProvider):
    """DeepSeek (``https://api.deepseek.com``)."""

    default_base_url = "https://api.deepseek.com"
    price_provider = "deepseek"


class TogetherProvider(OpenAIProvider):
    """Together AI (``https://api.together.xyz/v1``)."""

    default_base_url = "https://api.together.xyz/v1"
    price_provider = "together"


class FireworksProvider(OpenAIProvider):
    """Fireworks AI (``https://api.fireworks.ai/inference/v1``)."""

    default_base_url = "https://api.fireworks.ai/inference/v1"
    price_provider = "fireworks"


class OpenRouterOptions(OpenAIOptions):
    """``options:`` of an ``openrouter`` provider: OpenRouter's app attribution."""

    http_referer: str | None = None
    """Sent as ``HTTP-Referer``: your site, for OpenRouter's rankings."""
    x_title: str | None = None
    """Sent as ``X-Title``: your app's name, for OpenRouter's rankings."""


class OpenRouterProvider(OpenAIProvider):
    """OpenRouter (``https://openrouter.ai/api/v1``); models are ``vendor/model``,
    so a target reads ``openrouter/anthropic/claude-sonnet-4.5``."""

    Options = OpenRouterOptions
    default_base_url = "https://openrouter.ai/api/v1"
    price_provider = "openrouter"

    def base_headers(self, configured: dict[str, str]) -> dict[str, str]:
        options = self.options
        attribution = {
            name: value
            for name, value in (
                ("http-referer", options.http_referer),
                ("x-title", options.x_title),
            )
            if value
        }
        return super().base_headers({**attribution, **configured})  # the policy's headers win


class XAIProvider(OpenAIProvider):
    """xAI (``https://api.x.ai/v1``)."""

    default_base_url = "https://api.x.ai/v1"
    price_provider = "x-ai"


class CerebrasProvider(OpenAIProvider):
    """Cerebras (``https://api.cerebras.ai/v1``); streams end with usage unasked."""

    Options = _NoStreamOptions
    default_base_url = "https://api.cerebras.ai/v1"
    price_provider = "cerebras"


class PerplexityProvider(OpenAIProvider):
    """Perplexity Sonar (``https://api.perplexity.ai``, no ``/v1``); every
    stream chunk carries usage unasked."""

    Options = _NoStreamOptions
    default_base_url = "https://api.perplexity.ai"
    price_provider = "perplexity"


class _LocalServer(OpenAIProvider):
    """A local OpenAI-compatible server: no key needed (one is sent as Bearer
    if configured), nothing billed."""

    requires_api_key = False
    free = True


class OllamaProvider(_LocalServer):
    """Ollama's OpenAI-compatible API (``http://127.0.0.1:11434/v1``)."""

    default_base_url = "http://127.0.0.1:11434/v1"


class VLLMProvider(_LocalServer):
    """vLLM's OpenAI-compatible server (``http://127.0.0.1:8000/v1``); a key is
    needed only when the server was started with ``--api-key``."""

    default_base_url = "http://127.0.0.1:8000/v1"


class LMStudioProvider(_LocalServer):
    """LM Studio's local server (``http://127.0.0.1:1234/v1``)."""

    Options = _NoStreamOptions
    default_base_url = "http://127.0.0.1:1234/v1"


PRESETS: dict[str, type[OpenAIProvider]] = {
    "groq": GroqProvider,
    "mistral": MistralProvider,
    "deepseek": DeepSeekProvider,
    "together": TogetherProvider,
    "fireworks": FireworksProvider,
    "openrouter": OpenRouterProvider,
    "xai": XAIProvider,
    "cerebras": CerebrasProvider,
    "perplexity": PerplexityProvider,
    "ollama": OllamaProvider,
    "vllm": VLLMProvider,
    "lmstudio": LMStudioProvider,
}
"""Provider type name → class, in the order the docs list them."""


@hookimpl
def turnout_register_providers(register: RegisterProvider) -> None:
    """Register every preset type."""
    for name, cls in PRESETS.items():
        register(name, cls)
