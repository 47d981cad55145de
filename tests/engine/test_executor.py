"""Running plans: retries, fallbacks, timeouts, cancellation, accounting — on the mock provider."""

from __future__ import annotations

import asyncio

import pytest
from turnout import ChatResponse, TurnoutError, hookimpl

from tests.conftest import user

FLAKY = """
providers:
  mock: {type: mock}
  flaky:
    type: mock
    options:
      script: [STEPS]
routes:
  - name: r
    match: {model: r}
    targets: [flaky/primary]
    fallbacks: [mock/backup]
    retry: {attempts: ATTEMPTS, backoff: 1ms, max_backoff: 50ms}
    timeout: {total: 5s}
"""


def flaky(steps: str, attempts: int = 1) -> str:
    return FLAKY.replace("STEPS", steps).replace("ATTEMPTS", str(attempts))


@pytest.mark.parametrize(
    "failure",
    [
        "overloaded",
        "rate_limited",
        "server_error",
        "timeout",
        "connection",
        "auth",
        "context_length",
    ],
)
async def test_failures_of_the_target_fall_back(make_engine, failure: str) -> None:
    engine = make_engine(flaky(f"{{fail: {failure}}}"))
    response = await engine.chat(user(model="r"))
    fields = response.extra_fields
    assert fields.provider == "mock" and response.model == "backup"
    assert [(a.provider, a.outcome) for a in fields.attempts] == [
        ("flaky", failure),
        ("mock", "ok"),
    ]


async def test_a_bad_request_is_returned_without_trying_fallbacks(make_engine) -> None:
    engine = make_engine(flaky("{fail: bad_request}", attempts=3))
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="r"))
    assert info.value.status_code == 400
    assert [a["outcome"] for a in info.value.extra_fields["attempts"]] == ["bad_request"]


async def test_retries_the_same_target_before_falling_back(make_engine) -> None:
    engine = make_engine(flaky("{fail: overloaded}, {fail: rate_limited}", attempts=3))
    response = await engine.chat(user(model="r"))
    outcomes = [(a.provider, a.outcome) for a in response.extra_fields.attempts]
    assert outcomes == [("flaky", "overloaded"), ("flaky", "rate_limited"), ("flaky", "ok")]


async def test_non_retryable_failures_go_straight_to_the_fallback(make_engine) -> None:
    engine = make_engine(flaky("{fail: auth}", attempts=3))
    response = await engine.chat(user(model="r"))
    assert [a.outcome for a in response.extra_fields.attempts] == ["auth", "ok"]


async def test_retry_after_longer_than_max_backoff_moves_on(make_engine) -> None:
    engine = make_engine(flaky("{fail: rate_limited, retry_after: 10s}", attempts=3))
    response = await engine.chat(user(model="r"))
    assert [a.provider for a in response.extra_fields.attempts] == ["flaky", "mock"]


async def test_retry_after_is_waited_for(make_engine) -> None:
    engine = make_engine(flaky("{fail: rate_limited, retry_after: 40ms}", attempts=2))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    engine.executor.sleep = sleep
    response = await engine.chat(user(model="r"))
    assert [a.outcome for a in response.extra_fields.attempts] == ["rate_limited", "ok"]
    assert slept and slept[0] >= 0.04


async def test_when_every_attempt_fails_the_error_lists_them(make_engine) -> None:
    engine = make_engine("""
        providers:
          a: {type: mock, options: {script: [{fail: overloaded}]}}
          b: {type: mock, options: {script: [{fail: server_error}]}}
        routes:
          - {name: r, match: {model: r}, targets: [a/x], fallbacks: [b/y]}
    """)
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="r"))
    error = info.value
    assert error.status_code == 502 and error.type == "api_error"
    assert "all 2 attempts failed (a/x: overloaded; b/y: server_error)" in error.message
    body = error.to_dict()
    assert body["error"]["code"] == "server_error" and body["status_code"] == 502
    assert [a["provider"] for a in body["extra_fields"]["attempts"]] == ["a", "b"]


async def test_a_slow_target_times_out_against_the_total_timeout(make_engine) -> None:
    engine = make_engine("""
        providers:
          slow: {type: mock, options: {latency: 10s}}
        routes:
          - {name: r, match: {model: r}, targets: [slow/x], timeout: {total: 50ms}}
    """)
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="r"))
    assert info.value.status_code == 504


async def test_an_empty_plan_over_the_cost_cap_is_a_4xx(make_engine) -> None:
    engine = make_engine("""
        providers: {mock: {type: mock}}
        models: {mock/dear: {input_per_mtok: 100, output_per_mtok: 100, context_window: 100000}}
        routes:
          - {name: r, match: {model: r}, targets: [mock/dear], cost_cap: {per_request: 0.001}}
    """)
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="r", max_tokens=500))
    assert info.value.status_code == 400 and info.value.code == "cost_cap_exceeded"
    assert "mock/dear: worst case" in info.value.message


async def test_an_empty_plan_of_disabled_providers_is_a_503(make_engine) -> None:
    engine = make_engine("""
        providers: {openai: {type: openai, api_key: "${OPENAI_API_KEY}"}}
        routes: [{name: r, match: {model: r}, targets: [openai/gpt-4o]}]
    """)
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="r"))
    assert info.value.status_code == 503 and info.value.code == "no_target_available"
    assert "OPENAI_API_KEY" in info.value.message


async def test_unknown_model_is_a_404(make_engine) -> None:
    engine = make_engine("providers: {mock: {type: mock}}")
    with pytest.raises(TurnoutError) as info:
        await engine.chat(user(model="nothing-routes-this"))
    assert info.value.status_code == 404 and info.value.param == "model"


async def test_invalid_requests_are_rejected_before_any_call(make_engine) -> None:
    engine = make_engine("providers: {mock: {type: mock}}")
    cases = [
        ({"model": "mock/x"}, 400),
        ({"model": "mock/x", "messages": []}, 400),
        (
            {"model": "mock/x", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            422,
        ),
        ({"model": "mock/x", "messages": [{"role": "robot", "content": "x"}]}, 422),
        (b'{"model": "mock/x", "messages": [', 400),
    ]
    for body, status in cases:
        with pytest.raises(TurnoutError) as info:
            await engine.chat(body)
        assert info.value.status_code == status, body


async def test_response_carries_the_seed_extra_fields(make_engine) -> None:
    engine = make_engine("""
        providers: {mock: {type: mock}}
        models: {mock/priced: {input_per_mtok: 1000000, output_per_mtok: 2000000}}
        routes: [{name: r, match: {model: r}, targets: [mock/priced]}]
    """)
    response = await engine.chat(
        user("one two three", model="r", temperature=0.5), request_id="req-1"
    )
    fields = response.extra_fields
    assert fields.provider == "mock" and fields.model_requested == "r" and fields.route == "r"
    assert fields.request_id == "req-1" and fields.request_type == "chat_completion"
    assert fields.model_params == {"temperature": 0.5}
    assert fields.billed_usage.prompt_tokens == 3 and fields.billed_usage.completion_tokens == 3
    assert fields.cost == pytest.approx(3 * 1.0 + 3 * 2.0)
    assert fields.raw_response is None
    assert isinstance(fields.latency, int)
    wire = response.model_dump(mode="json")
    assert (
        wire["object"] == "chat.completion"
        and wire["choices"][0]["message"]["content"] == "one two three"
    )


async def test_cancelling_the_caller_cancels_the_upstream_call(make_engine) -> None:
    finished = []

    class Observer:
        @hookimpl
        def turnout_request_finished(self, ctx, outcome):
            finished.append(outcome.status)
            trails.append([(r.provider, r.model, r.outcome) for r in ctx.trail])

    trails: list[list[tuple[str, str, str]]] = []
    engine = make_engine(
        """
        providers: {slow: {type: mock, options: {latency: 30s}}}
    """,
        plugins=[Observer()],
    )
    task = asyncio.create_task(engine.chat(user(model="slow/x")))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["cancelled"]
    # the call cut short is on the trail, so logs and metrics name its provider
    assert trails == [[("slow", "x", "cancelled")]]


def test_chat_sync_works_without_an_event_loop() -> None:
    from tests.conftest import build_engine

    engine = build_engine("providers: {mock: {type: mock}}")
    try:
        response = engine.chat_sync(user("sync call", model="mock/x"))
        assert isinstance(response, ChatResponse)
        assert response.choices[0].message.content == "sync call"
    finally:
        engine.close()


# -- streaming ---------------------------------------------------------------


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


async def test_stream_yields_openai_chunks_and_fills_extra_fields(make_engine) -> None:
    engine = make_engine("providers: {mock: {type: mock}}")
    stream = engine.stream(user("a b c", model="mock/x", stream_options={"include_usage": True}))
    chunks = await collect(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a b c"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    fields = stream.extra_fields
    assert fields.provider == "mock" and fields.request_type == "chat_completion_stream"
    assert fields.billed_usage.completion_tokens == 3


async def test_stream_usage_chunk_is_kept_for_accounting_but_not_sent_unasked(make_engine) -> None:
    engine = make_engine("providers: {mock: {type: mock}}")
    stream = engine.stream(user("a b", model="mock/x"))
    chunks = await collect(stream)
    assert all(c.usage is None for c in chunks)


async def test_stream_falls_back_when_the_first_target_fails_before_the_first_chunk(
    make_engine,
) -> None:
    engine = make_engine(flaky("{fail: overloaded}"))
    stream = engine.stream(user("x y", model="r"))
    chunks = await collect(stream)
    assert chunks[0].model == "backup"
    assert [a.outcome for a in stream.extra_fields.attempts] == ["overloaded", "ok"]


async def test_stream_failure_after_the_first_chunk_raises_instead_of_ending_quietly(
    make_engine,
) -> None:
    engine = make_engine(flaky("{fail: server_error, fail_after_chunks: 2}"))
    stream = engine.stream(user("one two three four", model="r"))
    received = []
    with pytest.raises(TurnoutError) as info:
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 2
    assert info.value.code == "stream_interrupted" and info.value.status_code == 502


async def test_first_token_timeout_falls_back(make_engine) -> None:
    engine = make_engine("""
        providers:
          slow: {type: mock, options: {latency: 10s}}
          mock: {type: mock}
        routes:
          - name: r
            match: {model: r}
            targets: [slow/x]
            fallbacks: [mock/y]
            timeout: {total: 5s, first_token: 50ms}
    """)
    stream = engine.stream(user(model="r"))
    chunks = await collect(stream)
    assert chunks[0].model == "y"
    assert [a.outcome for a in stream.extra_fields.attempts] == ["timeout", "ok"]


async def test_closing_a_stream_early_finishes_the_request(make_engine) -> None:
    finished = []

    class Observer:
        @hookimpl
        def turnout_request_finished(self, outcome):
            finished.append(outcome.status)

    engine = make_engine(
        "providers: {mock: {type: mock, options: {chunk_delay: 10ms}}}", plugins=[Observer()]
    )
    stream = engine.stream(user("a b c d e f", model="mock/x"))
    await anext(stream)
    await stream.aclose()
    assert finished == ["cancelled"]
