"""Model prices and limits: the bundled genai-prices data, with policy overrides.

Looked up once per target when the policy compiles, never per request. Worst
cases use the dearest tier of a tiered price, so a cost cap is never exceeded
because a prompt crossed a tier boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from turnout.policy.models import ModelOverride

__all__ = ["Catalog", "ModelInfo"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the engine knows of one ``provider/model``.

    :param input_per_mtok: USD per million input tokens (None: unknown).
    :param output_per_mtok: USD per million output tokens (None: unknown).
    :param source: where the figures came from: ``policy``, ``genai-prices``,
        ``free`` (a provider that never bills) or ``unknown``.
    """

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    source: str = "unknown"
    exact_price: Any = None  # genai-prices ModelPrice, for settling real usage
    flat: FlatPrice | None = None  # the same prices as plain floats, below any tier

    @property
    def priced(self) -> bool:
        return self.input_per_mtok is not None and self.output_per_mtok is not None

    def output_bound(self, prompt_tokens: int, requested: int | None) -> int | None:
        """The most output tokens an attempt can bill, or None if unbounded."""
        if requested is not None:
            return requested
        if self.max_output_tokens is not None:
            return self.max_output_tokens
        if self.context_window is not None:
            return max(self.context_window - prompt_tokens, 0)
        return None

    def worst_case_cost(self, prompt_tokens: int, output_tokens: int | None) -> float | None:
        """USD of the dearest outcome, or None when it cannot be bounded."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        if output_tokens is None:
            return None if self.output_per_mtok else prompt_tokens * self.input_per_mtok / 1e6
        return (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def cost(self, prompt_tokens: int, completion_tokens: int, usage: Any = None) -> float | None:
        """USD of real usage; exact (tiers, cached tokens) where genai-prices knows the model."""
        if self.exact_price is not None:
            details = getattr(usage, "prompt_tokens_details", None) or {}
            if not isinstance(details, dict):
                details = {}
            flat = self.flat
            if flat is not None and prompt_tokens < flat.tier_start:
                return flat.cost(
                    prompt_tokens,
                    completion_tokens,
                    details.get("cached_tokens") or 0,
                    details.get("cache_creation_tokens") or 0,
                )
            try:
                from genai_prices import Usage

                price = self.exact_price.calc_price(
                    Usage(
                        input_tokens=prompt_tokens,
                        output_tokens=completion_tokens,
                        cache_read_tokens=details.get("cached_tokens") or None,
                        cache_write_tokens=details.get("cache_creation_tokens") or None,
                    )
                )
                return float(price["total_price"])
            except Exception:  # an odd price shape must not fail a served request
                pass
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


@dataclass(frozen=True, slots=True)
class FlatPrice:
    """Token prices (USD per token) for the usual case, without genai-prices' general
    machinery (≈ 120 µs a call): the exact path is kept for tiers it cannot cover.

    Cached reads bill at ``cache_read``; cache writes at ``cache_write`` where the
    model prices them, else as ordinary input — genai-prices' own rules. Other
    price keys (audio, 1h cache writes) price usage fields the engine never
    reports, so they cannot apply.
    """

    input: float
    output: float
    cache_read: float | None
    cache_write: float | None
    tier_start: float  # prompts this long or longer take the exact path

    @classmethod
    def of(cls, price: Any) -> FlatPrice | None:
        known = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}
        fields = {k: v for k, v in vars(price).items() if v is not None and not k.startswith("_")}
        if "input_mtok" not in fields or "output_mtok" not in fields:
            return None
        starts: list[float] = []
        values: dict[str, float | None] = {}
        for key in known:
            value = fields.get(key)
            if value is None:
                values[key] = None
                continue
            base = getattr(value, "base", value)
            starts += [float(t.start) for t in getattr(value, "tiers", None) or []]
            values[key] = float(base) / 1e6
        assert values["input_mtok"] is not None and values["output_mtok"] is not None
        return cls(
            values["input_mtok"],
            values["output_mtok"],
            values["cache_read_mtok"],
            values["cache_write_mtok"],
            min(starts, default=math.inf),
        )

    def cost(self, prompt: int, completion: int, cached: int, written: int) -> float:
        read_price = self.input if self.cache_read is None else self.cache_read
        if self.cache_write is None:
            written_cost, written = 0.0, 0  # billed as ordinary input
        else:
            written_cost = written * self.cache_write
        uncached = max(prompt - cached - written, 0)
        return uncached * self.input + cached * read_price + written_cost + completion * self.output


FREE = ModelInfo(0.0, 0.0, source="free")


def _dearest(price: Any) -> float | None:
    if price is None:
        return None
    if isinstance(price, Decimal | int | float):
        return float(price)
    base = getattr(price, "base", None)
    tiers = getattr(price, "tiers", None) or []
    values = [
        float(v) for v in [base, *(getattr(t, "price", None) for t in tiers)] if v is not None
    ]
    return max(values) if values else None


class Catalog:
    """Resolves ``provider/model`` to a ModelInfo; overrides win field by field."""

    def __init__(self, overrides: Mapping[str, ModelOverride]) -> None:
        self._overrides = {key.lower(): value for key, value in overrides.items()}

    def lookup(
        self, provider: str, model: str, *, price_provider: str | None, free: bool
    ) -> ModelInfo:
        """Figures for ``model`` on the provider instance named ``provider``.

        :param price_provider: the genai-prices provider id of the provider's type.
        :param free: the provider type never bills (the mock provider).
        """
        base = FREE if free else self._bundled(price_provider, model)
        override = self._overrides.get(f"{provider}/{model}".lower())
        if override is None:
            return base
        fields = {k: v for k, v in override.model_dump().items() if v is not None}
        exact = (
            base.exact_price
            if not ({"input_per_mtok", "output_per_mtok"} & fields.keys())
            else None
        )
        return ModelInfo(
            input_per_mtok=fields.get("input_per_mtok", base.input_per_mtok),
            output_per_mtok=fields.get("output_per_mtok", base.output_per_mtok),
            context_window=fields.get("context_window", base.context_window),
            max_output_tokens=fields.get("max_output_tokens", base.max_output_tokens),
            source="policy",
            exact_price=exact,
        )

    @staticmethod
    def _bundled(price_provider: str | None, model: str) -> ModelInfo:
        if price_provider is None:
            return ModelInfo()
        from genai_prices import data_snapshot

        try:
            _, info = data_snapshot.get_snapshot().find_provider_model(
                model, None, price_provider, None
            )
            price = info.get_prices(datetime.now(tz=UTC))
        except (LookupError, ValueError):
            return ModelInfo()
        return ModelInfo(
            input_per_mtok=_dearest(getattr(price, "input_mtok", None)),
            output_per_mtok=_dearest(getattr(price, "output_mtok", None)),
            context_window=info.context_window,
            source="genai-prices",
            exact_price=price,
            flat=FlatPrice.of(price),
        )
