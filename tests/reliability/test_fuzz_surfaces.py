"""Fuzzing POST /v1/responses, /v1/completions and /v1/embeddings of a served gateway: arbitrary
JSON, wrong types and malformed items never get a 5xx, every error is JSON in
the documented shape, and the server stays up."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from .test_fuzz_http import FUZZ, JSON, assert_well_formed, http, served  # noqa: F401

pytestmark = pytest.mark.timeout(180)

ITEM = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning",
                                 "web_search_call"]) | JSON,
        "role": st.sampled_from(["user", "assistant", "developer", "tool"]) | JSON,
        "content": st.text(max_size=20) | st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(["input_text", "input_image", "x"]) | JSON},
                                  optional={"text": JSON, "image_url": JSON}), max_size=3) | JSON,
        "call_id": JSON, "name": JSON, "arguments": JSON, "output": JSON,
    },
)  # fmt: skip
RESPONSES = st.fixed_dictionaries(
    {"model": st.sampled_from(["smart", ""]) | JSON,
     "input": st.text(max_size=20) | st.lists(ITEM, max_size=4) | JSON},
    optional={name: JSON for name in (
        "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens",
        "metadata", "store", "stream", "previous_response_id", "temperature")},
)  # fmt: skip
COMPLETIONS = st.fixed_dictionaries(
    {"model": st.sampled_from(["smart", ""]) | JSON, "prompt": st.text(max_size=20) | JSON},
    optional={name: JSON for name in ("max_tokens", "echo", "stream", "suffix", "stop", "n")},
)

EMBEDDINGS = st.fixed_dictionaries(
    {"model": st.sampled_from(["smart", "mock/embed", ""]) | JSON,
     "input": st.text(max_size=20) | st.lists(st.text(max_size=8) | st.integers(-2, 9) | JSON,
                                              max_size=4) | JSON},
    optional={name: JSON for name in ("dimensions", "encoding_format", "user", "fallbacks")},
)  # fmt: skip


def _post(http: httpx.Client, path: str, body: object) -> None:  # noqa: F811
    response = http.post(path, content=json.dumps(body).encode())
    assert_well_formed(response)


@FUZZ
@given(RESPONSES)
def test_responses_requests_with_wrong_types(http: httpx.Client, body: object) -> None:  # noqa: F811
    _post(http, "/v1/responses", body)


@FUZZ
@given(COMPLETIONS)
def test_completions_requests_with_wrong_types(http: httpx.Client, body: object) -> None:  # noqa: F811
    _post(http, "/v1/completions", body)


@FUZZ
@given(EMBEDDINGS)
def test_embeddings_requests_with_wrong_types(http: httpx.Client, body: object) -> None:  # noqa: F811
    _post(http, "/v1/embeddings", body)


@FUZZ
@given(st.text(max_size=40))
def test_stored_response_paths(http: httpx.Client, tail: str) -> None:  # noqa: F811
    for method in ("GET", "DELETE"):
        response = http.request(method, "/v1/responses/" + quote(tail, safe="/"))
        if response.status_code != 200:
            assert_well_formed(response)


def test_the_server_is_still_up(http: httpx.Client) -> None:  # noqa: F811
    assert http.get("/health").status_code == 200
