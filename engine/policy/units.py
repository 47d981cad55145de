"""What every policy model builds on: the strict model base and durations.

Kept below ``models`` and ``limit_models`` so both import it and neither
imports the other's helpers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["Duration", "Strict", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``250ms``, ``10s``, ``1.5m``, ``2h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(
        f"invalid duration {value!r}: use a number followed by ms, s, m or h, such as 250ms or 10m"
    )


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in routes.yaml as ``250ms``, ``10s``, ``1.5m``, ``2h`` or a number."""


class Strict(BaseModel):
    """A policy section: unknown keys are errors, and the model is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
