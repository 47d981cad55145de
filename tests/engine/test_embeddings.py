"""Embeddings through the engine's serve path: input guardrails see (and redact)
every input, the context window applies per input, budgets bill input tokens,
and the wire helpers (base64, the planning view) hold for any input."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnout import TurnoutError
from turnout.surfaces.embeddings import encode_base64, parse_embeddings_request, planning_view

from tests.fakes.openai_upstream import FakeOpenAI

POLICY = """
providers:
  fake: {{type: openai, base_url: "{url}", api_key: k}}
  mock: {{type: mock}}
routes:
  - name: guarded
    match: {{model: guarded}}
    targets: [fake/text-embedding-3-small]
    guardrails: [{{type: pii, action: redact}}, secrets]
  - name: metered
    match: {{model: metered}}
    targets: [fake/text-embedding-3-small]
    budget: {{limit: 1, window: 1h}}
  - name: direct
    match: {{model: "*/*"}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
def engine(make_engine, fake):
    fake.reset()
    return make_engine(POLICY.format(url=fake.base_url))


async def test_input_guardrails_redact_and_block_every_input(engine, fake):
    await engine.embeddings.create(
        {"model": "guarded", "input": ["plain text", "mail ada@example.com now"]}
    )
    assert fake.requests[-1].body["input"] == ["plain text", "mail [EMAIL_1] now"]
    with pytest.raises(TurnoutError) as info:
        await engine.embeddings.create(
            {"model": "guarded", "input": ["fine", "key AKIAIOSFODNN7EXAMPLE here"]}
        )
    assert info.value.status_code == 400 and info.value.code == "guardrail_blocked"


async def test_the_context_window_applies_to_each_input_not_their_sum(engine):
    batch = ["twenty characters ok" * 5] * 400  # ≈25 tokens each, ≈10,000 in all
    answer = await engine.embeddings.create(
        {"model": "fake/text-embedding-3-small", "input": batch}
    )
    assert len(answer["data"]) == 400
    with pytest.raises(TurnoutError, match="context window is 8192") as info:
        await engine.embeddings.create(
            {"model": "fake/text-embedding-3-small", "input": ["short", "word " * 9000]}
        )
    assert info.value.status_code == 400 and info.value.code == "context_length_exceeded"


async def test_budgets_are_charged_the_input_tokens(engine):
    answer = await engine.embeddings.create({"model": "metered", "input": ["a b c", "d e"]})
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["extra_fields"]["billed_usage"]["prompt_tokens"] == 5
    rows = await engine.ledger.overview(engine.table.limits, ["metered"])
    assert rows, "the route's budget is listed"
    assert rows[0]["spent"] == pytest.approx(5 * 0.02 / 1e6)


async def test_an_upstream_echoing_a_secret_as_its_model_is_masked(make_engine, fake):
    secret = "sk-embed-secret-0123456789"
    policy = f"""
providers:
  leaky: {{type: openai, base_url: "{fake.base_url}", api_key: {secret}}}
routes: [{{name: direct, match: {{model: "*/*"}}}}]
"""
    answer = await make_engine(policy).embeddings.create({"model": f"leaky/{secret}", "input": "x"})
    assert fake.requests[-1].body["model"] == secret  # the fake answers with the model sent
    assert answer["model"] == "***"


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=64))
def test_base64_is_little_endian_float32(vector: list[float]) -> None:
    raw = base64.b64decode(encode_base64(vector))
    assert list(struct.unpack(f"<{len(vector)}f", raw)) == vector


@given(
    st.one_of(
        st.text(min_size=1, max_size=20),
        st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8),
        st.lists(st.integers(0, 100_000), min_size=1, max_size=8),
        st.lists(st.lists(st.integers(0, 100_000), min_size=1, max_size=4), min_size=1, max_size=4),
    ),
    st.none() | st.integers(1, 3072),
)
def test_the_planning_view_keeps_what_decides_the_vectors(raw: object, dimensions: int | None):
    request = parse_embeddings_request({"model": "m", "input": raw, "dimensions": dimensions})
    view = planning_view(request)
    texts = request.texts
    if texts is not None:
        assert [m.content for m in view.messages] == texts
    else:
        assert view.model_extra is not None
        assert view.model_extra["embeddings"]["tokens"] == request.inputs
    assert view.temperature == 0
