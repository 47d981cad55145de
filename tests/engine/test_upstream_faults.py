"""The engine with the openai provider against a fake OpenAI upstream over real
loopback HTTP: the first target misbehaves on the wire, the fallback serves."""

from __future__ import annotations

import pytest
from turnout import TurnoutError

from tests.conftest import user
from tests.fakes.openai_upstream import FakeOpenAI

POLICY = """
providers:
  primary:
    type: openai
    base_url: {url}
    api_key: sk-primary
    timeout: {{connect: 1s, read: 300ms}}
    headers: {{x-fake-fault: "{fault}"}}
  backup:
    type: openai
    base_url: {url}
    api_key: sk-backup
models:
  primary/gpt-4o: {{context_window: 100000}}
routes:
  - name: r
    match: {{model: r}}
    targets: [primary/gpt-4o]
    fallbacks: [backup/gpt-4o-mini]
    retry: {{attempts: 2, backoff: 1ms, max_backoff: 100ms}}
    timeout: {{total: 10s, first_token: 1s}}
"""


@pytest.fixture
def fake():
    with FakeOpenAI() as upstream:
        yield upstream


def policy(fake: FakeOpenAI, fault: str) -> str:
    return POLICY.format(url=fake.base_url, fault=fault)


def served_by(fake: FakeOpenAI) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in fake.requests]


@pytest.mark.parametrize(
    ("fault", "failure", "tries"),
    [
        ("status:503", "overloaded", 2),
        ("status:429", "rate_limited", 2),
        ("status:500", "server_error", 2),
        ("delay:2s", "timeout", 2),
        ("reset", "connection", 2),
        ("malformed_json", "server_error", 2),
        ("status:401", "auth", 1),
    ],
)
async def test_a_failing_first_target_is_served_by_its_fallback(
    make_engine, fake: FakeOpenAI, fault: str, failure: str, tries: int
) -> None:
    engine = make_engine(policy(fake, fault))
    response = await engine.chat(user("hello upstream", model="r"))
    assert response.choices[0].message.content
    assert response.extra_fields.provider == "backup"
    trail = [(a.provider, a.outcome) for a in response.extra_fields.attempts]
    assert trail == [("primary", failure)] * tries + [("backup", "ok")]
    assert served_by(fake) == ["sk-primary"] * tries + ["sk-backup"]
    assert response.extra_fields.billed_usage.completion_tokens > 0
    assert response.extra_fields.cost is not None and response.extra_fields.cost > 0


async def test_a_400_from_the_upstream_is_returned_without_trying_fallbacks(
    make_engine, fake: FakeOpenAI
) -> None:
    engine = make_engine(policy(fake, "status:400"))
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="r"))
    assert info.value.status_code == 400
    assert served_by(fake) == ["sk-primary"]


async def test_a_stream_falls_back_when_the_first_target_fails_before_any_chunk(
    make_engine, fake: FakeOpenAI
) -> None:
    engine = make_engine(policy(fake, "status:503"))
    stream = engine.stream(user("stream me please", model="r"))
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and stream.extra_fields.provider == "backup"
    assert stream.extra_fields.billed_usage is not None  # usage asked for upstream, for cost
    assert all(c.usage is None for c in chunks)  # ... but not sent to a caller who did not ask


async def test_a_stream_cut_after_its_first_chunk_ends_in_an_error(make_engine, fake) -> None:
    engine = make_engine(policy(fake, "truncated_stream"))
    received = []
    with pytest.raises(TurnoutError) as info:
        async for chunk in engine.stream(user("a b c d e f g h", model="r")):
            received.append(chunk)
    assert received and info.value.code == "stream_interrupted"


async def test_a_stream_that_stalls_is_cut_by_the_read_timeout(make_engine, fake) -> None:
    engine = make_engine(policy(fake, "stall_after_first"))
    with pytest.raises(TurnoutError) as info:
        async for _ in engine.stream(user("a b c", model="r")):
            pass
    assert info.value.code == "stream_interrupted" and "timed out" in info.value.message


async def test_a_stream_that_stalls_is_cut_by_the_route_total_timeout(make_engine, fake) -> None:
    text = policy(fake, "stall_after_first").replace("read: 300ms", "read: 30s")
    engine = make_engine(text.replace("total: 10s", "total: 500ms"))
    with pytest.raises(TurnoutError) as info:
        async for _ in engine.stream(user("a b c", model="r")):
            pass
    assert info.value.code == "stream_interrupted"
    assert "total timeout passed mid-stream" in info.value.message
