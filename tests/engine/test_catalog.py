"""Prices: the fast flat path agrees with genai-prices' exact calculation."""

from __future__ import annotations

import pytest
from genai_prices import Usage as PriceUsage
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout.policy.catalog import Catalog
from turnout.policy.models import ModelOverride
from turnout.wire.chat import Usage

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku"),
    ("google", "gemini-2.5-flash"),
    ("google", "gemini-2.5-pro"),
    ("deepseek", "deepseek-chat"),
    ("mistral", "mistral-large-latest"),
]
CATALOG = Catalog({})


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_models_in_the_bundled_catalog_have_a_fast_path(provider: str, model: str) -> None:
    info = CATALOG.lookup(provider, model, price_provider=provider, free=False)
    assert info.source == "genai-prices" and info.priced
    assert info.flat is not None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.integers(0, 400_000),
    st.integers(0, 50_000),
    st.integers(0, 100),
    st.integers(0, 100),
)
def test_flat_prices_agree_with_genai_prices(
    pair: tuple[str, str], prompt: int, completion: int, cached_pct: int, written_pct: int
) -> None:
    provider, model = pair
    info = CATALOG.lookup(provider, model, price_provider=provider, free=False)
    cached = prompt * cached_pct // 100
    written = (prompt - cached) * written_pct // 100
    usage = Usage.model_validate(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_creation_tokens": written},
        }
    )
    exact = info.exact_price.calc_price(
        PriceUsage(
            input_tokens=prompt,
            output_tokens=completion,
            cache_read_tokens=cached or None,
            cache_write_tokens=written or None,
        )
    )
    assert info.cost(prompt, completion, usage) == pytest.approx(
        float(exact["total_price"]), rel=1e-9
    )


def test_policy_overrides_price_linearly() -> None:
    catalog = Catalog({"local/llama": ModelOverride(input_per_mtok=1, output_per_mtok=2)})
    info = catalog.lookup("local", "llama", price_provider=None, free=False)
    assert info.cost(1_000_000, 500_000) == pytest.approx(2.0)
    assert info.worst_case_cost(1000, 1000) == pytest.approx(0.003)
