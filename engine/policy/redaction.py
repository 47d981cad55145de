"""The policy's provider secrets, and text and JSON with them masked out.

An upstream may repeat a key it was sent (OpenAI's 401 names it) or any other
text a caller steered it to; nothing it sends back reaches a caller, a log or an
observer with a configured secret in it. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from turnout.errors import ProviderError

if TYPE_CHECKING:
    from turnout.policy.table import CompiledProvider

__all__ = [
    "MASK",
    "MIN_SECRET",
    "provider_secrets",
    "redact_error",
    "redact_json",
    "redact_text",
]

MASK = "***"
MIN_SECRET = 8
"""Shorter values (Ollama's ``ollama``) are placeholders, not secrets; masking them
would mangle ordinary words."""

_SECRET_NAME = re.compile(r"key|secret|token|password|credential|auth|signature", re.I)
_MAX_DEPTH = 64
_MAX_CODE = 100


def provider_secrets(providers: Iterable[CompiledProvider]) -> tuple[str, ...]:
    """Every secret the policy configures for its providers, longest first (so a
    secret inside a longer one is masked with it): their API keys, header values
    and options whose names say they are secrets (``Authorization``,
    ``secret_access_key``, ``session_token``), and a password in a ``base_url``."""
    found: set[str] = set()
    for provider in providers:
        found.update(provider.api_keys)
        config = provider.config
        for name, value in config.headers.items():
            if _SECRET_NAME.search(name):
                found.add(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.lower() in ("bearer", "basic", "token"):
                    found.add(token.strip())
        found.update(_secret_options(config.options))
        options = provider.provider.settings.options
        if options is not config.options:
            found.update(_secret_options(options))
        if config.base_url:
            password = urlsplit(config.base_url).password
            if password:
                found.add(password)
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))


def _secret_options(options: Any) -> Iterable[str]:
    values: Mapping[str, Any]
    if isinstance(options, BaseModel):
        values = {name: getattr(options, name, None) for name in type(options).model_fields}
    elif isinstance(options, Mapping):
        values = options
    else:
        return ()
    return [v for k, v in values.items() if isinstance(v, str) and _SECRET_NAME.search(str(k))]


def redact_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_error(error: ProviderError, secrets: tuple[str, ...]) -> ProviderError:
    """``error`` with every secret masked in its message and its upstream ``code``
    (the code also cut to 100 characters); ``error`` itself when it holds none."""
    message = redact_text(error.message, secrets)
    code = error.code
    if code is not None:
        code = redact_text(code, secrets)[:_MAX_CODE]
    if message == error.message and code == error.code:
        return error
    out = ProviderError(
        error.failure,
        message,
        status_code=error.status_code,
        retry_after=error.retry_after,
        code=code,
    )
    return out


def redact_json(value: Any, secrets: tuple[str, ...], depth: int = 0) -> Any:
    """A copy of a decoded JSON value with every secret masked in its strings and
    keys. Nesting past 64 levels is dropped."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact_text(value, secrets)
    if depth >= _MAX_DEPTH and isinstance(value, dict | list):
        return None
    if isinstance(value, dict):
        return {
            redact_text(str(k), secrets): redact_json(v, secrets, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_json(v, secrets, depth + 1) for v in value]
    return value
