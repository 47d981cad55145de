"""The policy's provider secrets, and text and JSON with them masked out.

An upstream may repeat a key it was sent (OpenAI's 401 names it) or any other
text a caller steered it to; nothing it sends back reaches a caller, a log or an
observer with a configured secret in it. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from turnout.errors import ProviderError

if TYPE_CHECKING:
    from turnout.policy.table import CompiledProvider

__all__ = ["MASK", "MIN_SECRET", "Redactor", "provider_secrets"]

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


@dataclass(frozen=True, slots=True)
class Redactor:
    """Masks the policy's secrets (``provider_secrets``) as ``***``; false when the
    policy has none. Built once per compiled policy (``RoutingTable.redactor``)."""

    secrets: tuple[str, ...]
    _pattern: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ordered = sorted(self.secrets, key=len, reverse=True)  # the longest wins a position
        pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        object.__setattr__(self, "_pattern", pattern)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        pattern = self._pattern
        if pattern is None or len(text) < MIN_SECRET:
            return text
        return pattern.sub(MASK, text)

    def error(self, error: ProviderError) -> ProviderError:
        """``error`` with every secret masked in its message and its upstream ``code``
        (the code also cut to 100 characters); ``error`` itself when it holds none."""
        message = self.text(error.message)
        code = error.code
        if code is not None:
            code = self.text(code)[:_MAX_CODE]
        if message == error.message and code == error.code:
            return error
        return ProviderError(
            error.failure,
            message,
            status_code=error.status_code,
            retry_after=error.retry_after,
            code=code,
        )

    def json(self, value: Any) -> Any:
        """A decoded JSON value with every secret masked in its strings and keys: a
        copy, or ``value`` itself when it holds none. Nesting past 64 levels is dropped."""
        pattern = self._pattern
        if pattern is None:
            return value
        if type(value) is dict:  # the common case, flat: one loop, no calls per member
            search = pattern.search
            for k, v in value.items():
                if type(k) is not str or type(v) is not str:
                    break
                if (len(k) >= MIN_SECRET and search(k)) or (len(v) >= MIN_SECRET and search(v)):
                    break
            else:
                return value
        if not self._holds(value, 0):
            return value
        return self._masked(value, 0)

    def extra(self, payload: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
        """``payload`` with the secrets masked in its members not named in ``known``
        (the fields an upstream adds, passed on as sent); ``payload`` itself when
        those hold none."""
        if self._pattern is None:
            return payload
        extra = {name: value for name, value in payload.items() if name not in known}
        if not extra or not self._holds(extra, 0):
            return payload
        out = {name: value for name, value in payload.items() if name in known}
        out.update(self._masked(extra, 0))
        return out

    def _holds(self, value: Any, depth: int) -> bool:
        """Whether any string (or key) in ``value`` holds a secret: the cheap first
        pass, so the common answer (none) costs no copy."""
        if isinstance(value, str):
            return len(value) >= MIN_SECRET and self._pattern.search(value) is not None  # type: ignore[union-attr]
        if isinstance(value, dict):
            if depth >= _MAX_DEPTH:
                return True
            for k, v in value.items():
                if self._holds(k, depth) or self._holds(v, depth + 1):
                    return True
        elif isinstance(value, list):
            if depth >= _MAX_DEPTH:
                return True
            for v in value:
                if self._holds(v, depth + 1):
                    return True
        return False

    def _masked(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth >= _MAX_DEPTH and isinstance(value, dict | list):
            return None
        if isinstance(value, dict):
            return {self.text(str(k)): self._masked(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self._masked(v, depth + 1) for v in value]
        return value
