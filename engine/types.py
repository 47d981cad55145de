"""Type aliases shared across the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = ["JSON", "Headers", "JSONObject", "JSONPath"]

JSON: TypeAlias = Any
JSONObject: TypeAlias = dict[str, Any]
JSONPath: TypeAlias = tuple[str | int, ...]
Headers: TypeAlias = Mapping[str, str]
