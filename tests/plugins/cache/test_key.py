"""The cache key: the same for the same request however it is written, different otherwise."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from turnout import ChatRequest
from turnout.plugins.cache.key import cache_key, canonical_json

from tests.conftest import build_engine

ENGINE = build_engine(
    """
    providers: {mock: {type: mock}}
    routes:
      - {name: r, match: {model: r}, targets: [mock/a, mock/b], fallbacks: [mock/c]}
      - {name: s, match: {model: s}, targets: [mock/a, mock/b], fallbacks: [mock/c]}
    """
)
ROUTE = ENGINE.table.routes[0]

texts = st.text(min_size=1, max_size=20)
floats = st.floats(min_value=0, max_value=2, allow_nan=False).map(lambda f: round(f, 3))
bodies = st.fixed_dictionaries(
    {
        "model": st.just("r"),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "assistant", "system"]), "content": texts}
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "temperature": floats,
        "top_p": st.floats(min_value=0, max_value=1, allow_nan=False).map(lambda f: round(f, 3)),
        "max_tokens": st.integers(1, 4096),
        "seed": st.integers(0, 1000),
        "n": st.integers(1, 4),
        "stop": st.lists(texts, max_size=2),
        "response_format": st.just({"type": "json_object"}),
        "tools": st.just(
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        ),
    },
)


def key(body: dict[str, Any] | str, route: Any = ROUTE, caller: str = "-") -> str:
    request = (
        ChatRequest.model_validate_json(body)
        if isinstance(body, str)
        else ChatRequest.model_validate(body)
    )
    return cache_key(request, route, prefix="t", caller=caller)


def reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def reformatted(body: dict[str, Any]) -> str:
    """The same JSON with floats written differently (1.0 → 1.00e0, 0.5 → 5.000e-1)."""
    text = json.dumps(reordered(body))
    if "temperature" in body:
        t = body["temperature"]
        text = text.replace(f'"temperature": {json.dumps(t)}', f'"temperature": {t:.6e}')
    return text


@given(bodies)
def test_the_key_ignores_key_order_and_float_formatting(body: dict[str, Any]) -> None:
    assert key(body) == key(reordered(body)) == key(reformatted(body))


@given(bodies, st.sampled_from(["user", "metadata", "stream", "fallbacks", "cache"]))
def test_the_key_ignores_fields_that_do_not_change_the_answer(body, field) -> None:
    extra = {
        "user": "someone",
        "metadata": {"team": "x"},
        "stream": True,
        "fallbacks": ["mock/z"],
        "cache": {"no_store": True},
    }[field]
    assert key(body) == key({**body, field: extra})


@given(
    bodies,
    st.sampled_from(
        ["messages", "temperature", "top_p", "max_tokens", "seed", "n", "stop", "tools", "format"]
    ),
)
def test_the_key_changes_when_any_semantic_field_changes(body, field) -> None:
    changed = dict(body)
    if field == "messages":
        changed["messages"] = [*body["messages"], {"role": "user", "content": "more"}]
    elif field == "temperature":
        changed["temperature"] = round(body.get("temperature", 0.5) + 0.25, 3) % 2
    elif field == "top_p":
        changed["top_p"] = 0.123 if body.get("top_p") != 0.123 else 0.456
    elif field in ("max_tokens", "seed", "n"):
        changed[field] = body.get(field, 1) + 1
    elif field == "stop":
        changed["stop"] = [*body.get("stop", []), "END"]
    elif field == "tools":
        changed["tools"] = [{"type": "function", "function": {"name": "g"}}]
    else:
        changed["response_format"] = {"type": "text"}
    assert key(body) != key(changed)


def test_the_key_is_namespaced_by_route_and_caller() -> None:
    body = {"model": "r", "messages": [{"role": "user", "content": "hi"}]}
    other_route = ENGINE.table.routes[1]
    assert key(body) != key(body, other_route)
    assert key(body, caller="a") != key(body, caller="b")
    assert key(body, caller="a").startswith("t:r:a:")


def test_the_direct_route_keys_on_the_model_named() -> None:
    direct = ENGINE.table.direct_route
    one = {"model": "mock/a", "messages": [{"role": "user", "content": "hi"}]}
    assert key(one, direct) != key({**one, "model": "mock/b"}, direct)


def test_canonical_json_normalises_numbers() -> None:
    assert canonical_json({"b": 1.0, "a": [0.5, 2]}) == canonical_json({"a": [0.50, 2.0], "b": 1})
