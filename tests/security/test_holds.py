"""A budget's hold covers what the upstream may bill: the output limit the
provider actually sends (thinking room raised by ``reasoning_effort``, a
preset's renamed ``max_tokens``), through the engine over real loopback HTTP
to strict fake upstreams (docs/security.md points here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turnout import Engine, TurnoutError
from turnout.plugins.providers import anthropic_wire, bedrock_wire
from turnout.wire.chat import ChatRequest

from tests.conftest import user
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI

KEY = "sk-ant-api03-test-0123456789"

# token budgets: 20,000 a day cannot hold a ~24,600-token thinking request, 100,000 can
POLICY = """
providers:
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: {key}}}
  mistral: {{type: mistral, base_url: "{openai}", api_key: sk-mistral-test}}
models:
  claude/claude-sonnet-4-5: {{input_per_mtok: 3, output_per_mtok: 15}}
  mistral/mistral-large-latest: {{input_per_mtok: 2, output_per_mtok: 6}}
routes:
  - name: think
    match: {{model: think}}
    targets: [claude/claude-sonnet-4-5]
    budget: {{limit: 20000, unit: tokens, window: day}}
  - name: roomy
    match: {{model: roomy}}
    targets: [claude/claude-sonnet-4-5]
    budget: {{limit: 100000, unit: tokens, window: day}}
  - name: capped
    match: {{model: capped}}
    targets: [claude/claude-sonnet-4-5]
    cost_cap: {{per_request: 0.01}}
  - name: mistral
    match: {{model: mistral}}
    targets: [mistral/mistral-large-latest]
    budget: {{limit: 1000, unit: tokens, window: day}}
"""


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
def engine(
    make_engine: Callable[..., Engine], anthropic: FakeAnthropic, openai_fake: FakeOpenAI
) -> Engine:
    anthropic.reset()
    openai_fake.reset()
    return make_engine(
        POLICY.format(anthropic=anthropic.base_url, openai=openai_fake.base_url, key=KEY)
    )


def test_the_plan_holds_the_thinking_room_the_provider_sends(engine: Engine) -> None:
    plan = engine.plan(user("hi", model="think", max_tokens=1, reasoning_effort="xhigh"))
    (attempt,) = plan.attempts
    assert plan.output_limit == 1
    assert attempt.output_ceiling is not None and attempt.output_ceiling > 24_000


async def route_books(engine: Engine, route: str) -> tuple[float, float]:
    from turnout.policy.limits import RequestFacts

    rows = await engine.ledger.status(engine.table.limits, RequestFacts(route))  # type: ignore[arg-type]
    row = next(r for r in rows if r["scope"] == "route" and r["match"] == route)
    return row["spent"], row["reserved"]


async def test_max_tokens_1_with_xhigh_effort_cannot_spend_past_a_token_budget(
    engine: Engine, anthropic: FakeAnthropic
) -> None:
    """max_tokens 1 + xhigh sends a ~24,577-token thinking budget. Holding the
    caller's max_tokens (1) let it through a 20,000-token budget; the hold of
    what is sent refuses it before any upstream call."""
    request = user("hi", model="think", max_tokens=1, reasoning_effort="xhigh")
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(request)
    assert caught.value.status_code == 429, caught.value.message
    assert anthropic.requests == []


async def test_a_thinking_request_that_fits_is_sent_and_settled_to_its_usage(
    engine: Engine, anthropic: FakeAnthropic
) -> None:
    response = await engine.chat(user("hi", model="roomy", max_tokens=1, reasoning_effort="xhigh"))
    sent = anthropic.requests[-1].body
    assert sent["thinking"]["type"] == "enabled"
    assert sent["max_tokens"] > 24_000
    spent, reserved = await route_books(engine, "roomy")
    assert reserved == 0
    assert response.usage is not None
    assert spent == response.usage.total_tokens


async def test_a_cost_cap_prices_the_thinking_room(engine: Engine) -> None:
    # $0.01 covers 1 output token, not ~24,577 of them at $15/Mtok ($0.37)
    with pytest.raises(TurnoutError) as caught:
        await engine.chat(user("hi", model="capped", max_tokens=1, reasoning_effort="xhigh"))
    assert caught.value.status_code in (400, 402, 429, 503), caught.value.message
    assert (
        "sends max_tokens"
        in engine.plan(user("hi", model="capped", max_tokens=1, reasoning_effort="xhigh")).explain()
    )
    await engine.chat(user("hi", model="capped", max_tokens=1))  # without thinking it fits


async def test_mistral_is_sent_the_limit_the_hold_covered(
    engine: Engine, openai_fake: FakeOpenAI
) -> None:
    """Both fields set: the hold uses max_completion_tokens (the request's
    output_limit); Mistral takes max_tokens only, so it must get that value."""
    await engine.chat(user("hi", model="mistral", max_tokens=900, max_completion_tokens=5))
    sent = openai_fake.requests[-1].body
    assert sent["max_tokens"] == 5
    assert "max_completion_tokens" not in sent


EFFORTS = st.sampled_from([None, "none", "minimal", "low", "medium", "high", "xhigh"])
CLAUDES = st.sampled_from(
    [
        "claude-sonnet-4-5",
        "claude-3-7-sonnet-latest",
        "claude-opus-4-1",
        "claude-opus-4-6",
        "claude-haiku-4-5",
    ]
)


@settings(max_examples=60)
@given(effort=EFFORTS, model=CLAUDES, limit=st.one_of(st.none(), st.integers(1, 200_000)))
def test_no_translation_sends_more_output_than_its_ceiling(
    effort: str | None, model: str, limit: int | None
) -> None:
    """The ceiling a budget holds is never below what the body carries, for the
    Anthropic Messages body and the Bedrock Converse body of the same request."""
    body = user("hi", model="m", **({"reasoning_effort": effort} if effort else {}))
    if limit is not None:
        body["max_tokens"] = limit
    request = ChatRequest.model_validate(body)
    default = anthropic_wire.default_max_tokens(model, stream=True)
    sent = anthropic_wire.messages_body(request, model, max_tokens=default)["max_tokens"]
    assert sent <= anthropic_wire.sent_max_tokens(request, model, max_tokens=default)
    bedrock_id = f"us.anthropic.{model}-20250929-v1:0"
    converse = bedrock_wire.to_converse(request, model=bedrock_id)
    carried = (converse.get("inferenceConfig") or {}).get("maxTokens")
    ceiling = bedrock_wire.sent_max_tokens(request, bedrock_id)
    assert carried is None or (ceiling is not None and carried <= ceiling)
