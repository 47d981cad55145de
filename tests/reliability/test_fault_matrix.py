"""Every upstream fault through a real served gateway: the fallback serves when
one is healthy (plain and streamed), the attempt trail and the attempts metric
say what happened, and without a fallback the caller gets a well-formed error —
never a hang past the policy's timeouts (each test is bounded by them)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.http.conftest import RunningGateway

from .conftest import FIRST_TOKEN, READ_TIMEOUT, TOTAL

# Worst case of one request: the total timeout plus connect/reading slack.
BOUND = TOTAL + 2.0
HELLO = [{"role": "user", "content": "one two three four five six"}]

pytestmark = pytest.mark.timeout(4 * BOUND)

# fault scripted on the primary upstream -> the failure class the trail records
FAULTS = [
    (Fault.status(429, retry_after=30), "rate_limited"),
    (Fault.status(500), "server_error"),
    (Fault.status(502), "server_error"),
    (Fault.status(503), "overloaded"),
    (Fault.status(504), "timeout"),
    (Fault.status(529), "overloaded"),
    (Fault.reset(), "connection"),
    (Fault.reset_mid_body(), "connection"),
    (Fault.delay(READ_TIMEOUT * 4), "timeout"),
    (Fault.malformed_json(), "server_error"),
    (Fault.error_body_200(), "server_error"),
    (Fault.truncated_stream(), "connection"),
    (Fault.stall_after_first(), "timeout"),
]
IDS = [str(f) for f, _ in FAULTS]


def attempts_metric(gateway: RunningGateway, provider: str, outcome: str) -> float:
    return gateway.metric("turnout_attempts_total", provider=provider, outcome=outcome)


def trail_of(body: dict[str, object]) -> list[tuple[str, str]]:
    extra = body["extra_fields"]
    assert isinstance(extra, dict)
    return [(a["provider"], a["outcome"]) for a in extra["attempts"]]


def assert_error_shape(body: dict[str, object], status: int) -> None:
    assert body["status_code"] == status
    error = body["error"]
    assert isinstance(error, dict) and set(error) >= {"type", "code", "message", "param"}
    assert error["message"] and "Traceback" not in str(error["message"])
    assert isinstance(body["extra_fields"], dict)


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each SSE event; event name "" for plain data events."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        out.append((name, data))
    return out


@pytest.mark.parametrize(("fault", "failure"), FAULTS, ids=IDS)
def test_fallback_serves_a_plain_request(
    gateway: RunningGateway, bad: FakeOpenAI, good: FakeOpenAI, fault: Fault, failure: str
) -> None:
    before = attempts_metric(gateway, "primary", failure)
    bad.script(fault)
    started = time.monotonic()
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "faulty", "messages": HELLO},
        timeout=BOUND,
    )
    assert time.monotonic() - started < BOUND
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "echo: " + HELLO[0]["content"]
    assert trail_of(body) == [("primary", failure), ("backup", "ok")]
    assert response.headers["x-turnout-attempts"] == "2"
    assert response.headers["x-turnout-provider"] == "backup"
    assert len(bad.requests) == 1 and len(good.requests) == 1
    gateway.wait_for(
        lambda: attempts_metric(gateway, "primary", failure) == before + 1, "the attempts metric"
    )


@pytest.mark.parametrize(("fault", "failure"), FAULTS, ids=IDS)
def test_without_a_fallback_the_error_is_well_formed(
    gateway: RunningGateway, bad: FakeOpenAI, fault: Fault, failure: str
) -> None:
    bad.script(fault)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=BOUND)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="alone", messages=HELLO)  # type: ignore[arg-type]
    response = caught.value.response
    assert response.status_code in (429, 502, 503, 504)
    body = response.json()
    assert_error_shape(body, response.status_code)
    assert trail_of(body) == [("primary", failure)]
    assert response.headers["x-turnout-attempts"] == "1"
    if fault.kind == "status" and fault.code == 429:
        assert isinstance(caught.value, openai.RateLimitError)


# Faults that strike before the first SSE event reach the gateway: the stream falls back.
EARLY = [(f, c) for f, c in FAULTS if f.kind not in ("truncated_stream", "stall_after_first")]


@pytest.mark.parametrize(("fault", "failure"), EARLY, ids=[str(f) for f, _ in EARLY])
def test_fallback_serves_a_stream(
    gateway: RunningGateway, bad: FakeOpenAI, good: FakeOpenAI, fault: Fault, failure: str
) -> None:
    before = attempts_metric(gateway, "primary", failure)
    bad.script(fault)
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "faulty", "messages": HELLO, "stream": True},
        timeout=BOUND,
    ) as response:
        text = response.read().decode()
    events = sse_events(text)
    if fault.kind == "reset_mid_body" and response.headers.get("x-turnout-provider") == "primary":
        # half of the SSE body may hold whole events: then the stream has begun and
        # can only end with an explicit error event
        assert events[-1][0] == "error"
        return
    assert response.status_code == 200, text
    assert response.headers["x-turnout-provider"] == "backup"
    assert response.headers["x-turnout-attempts"] == "2"
    assert events[-1] == ("", "[DONE]")
    assert not any(name == "error" for name, _ in events)
    chunks = [json.loads(d) for n, d in events[:-1]]
    text_out = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )
    assert text_out == "echo: " + HELLO[0]["content"]
    assert len(good.requests) == 1
    assert good.requests[0].body["stream"] is True
    gateway.wait_for(
        lambda: attempts_metric(gateway, "primary", failure) == before + 1, "the attempts metric"
    )


@pytest.mark.parametrize("fault", [Fault.truncated_stream(), Fault.stall_after_first()], ids=str)
def test_a_stream_broken_after_its_first_chunk_ends_with_an_error_event(
    gateway: RunningGateway, bad: FakeOpenAI, good: FakeOpenAI, fault: Fault
) -> None:
    bad.script(fault)
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "faulty", "messages": HELLO, "stream": True},
        timeout=BOUND,
    ) as response:
        text = response.read().decode()
    assert time.monotonic() - started < BOUND
    assert response.status_code == 200
    events = sse_events(text)
    assert "[DONE]" not in text
    assert events[0][0] == "" and json.loads(events[0][1])["object"] == "chat.completion.chunk"
    name, data = events[-1]
    assert name == "error"
    body = json.loads(data)
    assert_error_shape(body, body["status_code"])
    assert body["error"]["code"] == "stream_interrupted"
    assert good.requests == []  # a started stream is never spliced onto another provider


def test_first_token_timeout_is_shorter_than_the_read_timeout(
    gateway: RunningGateway, bad: FakeOpenAI
) -> None:
    bad.script(Fault.delay(READ_TIMEOUT * 0.9))  # within read, beyond first_token
    assert READ_TIMEOUT * 0.9 > FIRST_TOKEN
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "faulty", "messages": HELLO, "stream": True},
        timeout=BOUND,
    )
    assert response.status_code == 200
    assert response.headers["x-turnout-provider"] == "backup"


@pytest.mark.parametrize("route", ["refused", "nodns"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_falls_back(
    gateway: RunningGateway, good: FakeOpenAI, route: str, stream: bool
) -> None:
    before = attempts_metric(gateway, route, "connection")
    started = time.monotonic()
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": route, "messages": HELLO, "stream": stream},
        timeout=BOUND,
    )
    assert time.monotonic() - started < BOUND
    assert response.status_code == 200, response.text
    assert response.headers["x-turnout-provider"] == "backup"
    assert response.headers["x-turnout-attempts"] == "2"
    if not stream:
        assert trail_of(response.json()) == [(route, "connection"), ("backup", "ok")]
    assert len(good.requests) == 1
    gateway.wait_for(
        lambda: attempts_metric(gateway, route, "connection") >= before + 1, "the metric"
    )


def test_retry_after_within_max_backoff_is_waited_then_retried(
    gateway: RunningGateway, bad: FakeOpenAI, good: FakeOpenAI
) -> None:
    bad.script(Fault.status(429, retry_after=0.3))
    started = time.monotonic()
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "patient", "messages": HELLO},
        timeout=BOUND,
    )
    assert time.monotonic() - started >= 0.3
    assert trail_of(response.json()) == [("primary", "rate_limited"), ("primary", "ok")]
    assert good.requests == []


def test_retry_after_beyond_max_backoff_moves_on_at_once(
    gateway: RunningGateway, bad: FakeOpenAI, good: FakeOpenAI
) -> None:
    bad.script(Fault.status(429, retry_after=30))
    started = time.monotonic()
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "patient", "messages": HELLO},
        timeout=BOUND,
    )
    assert time.monotonic() - started < 2.0
    assert trail_of(response.json()) == [("primary", "rate_limited"), ("backup", "ok")]
