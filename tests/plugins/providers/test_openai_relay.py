"""The ``openai`` provider's relayed stream (``stream_events``): the upstream's
events passed on as bytes, against a MockTransport playing the OpenAI API.

What the caller gets must be what the parsed path (``stream``, through the
same ``ChunkRelay``) gives, however the network splits the body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers.openai import OpenAIProvider
from turnout.policy.redaction import Redactor
from turnout.wire.chat import ChatChunk, ChatRequest
from turnout.wire.relay import ChunkRelay, RelayedEvents, chunk_event

KEY = "sk-test-0123456789abcdef"
SSE = {"content-type": "text/event-stream; charset=utf-8"}
REQUEST: dict[str, Any] = {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}
USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
    """One event as OpenAI writes it: compact JSON, ``data: ...`` and a blank line."""
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_1",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


WIRE = b"".join(
    [
        chunk({"role": "assistant", "content": "", "refusal": None}, usage=None),
        b": keep-alive\n\n",
        chunk({"content": "Hello"}, usage=None),
        chunk({"content": " caf\xc3\xa9 \\u00e9"}, usage=None),
        chunk({"content": " world"}, usage=None),
        chunk({}, "stop", usage=None),
        chunk(None, usage=USAGE),
        b"data: [DONE]\n\n",
    ]
)


class Body(httpx.AsyncByteStream):
    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def provider() -> OpenAIProvider:
    return OpenAIProvider(
        ProviderSettings(name="openai", type="openai", base_url="http://upstream.test/v1")
    )


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % len(wire) for cut in cuts} - {0})
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]


def visible(items: list[RelayedEvents]) -> bytes:
    """The events a caller gets, in order (each read's events, then its held tail)."""
    return b"".join(
        item.data + (chunk_event(item.held) if item.held is not None else b"") for item in items
    )


def as_chunks(events: bytes) -> list[dict[str, Any]]:
    """The events' chunks, as the caller's SDK reads them."""
    return [
        ChatChunk.model_validate_json(event.removeprefix(b"data: ")).model_dump()
        for event in events.split(b"\n\n")
        if event
    ]


async def run(
    pieces: list[bytes], *, relayed: bool = True, keep_usage: bool = True, secrets: tuple = ()
) -> tuple[list[RelayedEvents], Body]:
    body = Body(*pieces)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=SSE, stream=body))
    async with httpx.AsyncClient(transport=transport) as client:
        call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
        relay = ChunkRelay(keep_usage, Redactor(secrets))
        under_test = provider()
        items = (
            under_test.stream_events(call, relay)
            if relayed
            else relay.relay(under_test.stream(call))
        )
        return [item async for item in items], body


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(min_value=1), max_size=16),
    crlf=st.booleans(),
    keep_usage=st.booleans(),
)
def test_any_split_of_the_stream_gives_the_caller_the_same_events(cuts, crlf, keep_usage):
    wire = WIRE.replace(b"\n", b"\r\n") if crlf else WIRE
    whole, _ = asyncio.run(run([wire], keep_usage=keep_usage))
    pieces, _ = asyncio.run(run(split(wire, cuts), keep_usage=keep_usage))
    parsed, _ = asyncio.run(run([wire], relayed=False, keep_usage=keep_usage))

    assert visible(pieces) == visible(whole)
    assert as_chunks(visible(pieces)) == as_chunks(visible(parsed))
    assert [i.usage for i in pieces if i.usage] == [i.usage for i in parsed if i.usage]


async def test_plain_chunks_pass_on_as_the_upstream_wrote_them():
    items, body = await run([WIRE])
    events = visible(items).split(b"\n\n")
    assert events[1] + b"\n\n" == chunk({"content": "Hello"}, usage=None)  # byte for byte
    assert items[-1].held is not None and items[-1].held.usage is not None  # the tail, held
    assert items[-1].usage is not None and items[-1].usage.total_tokens == 12
    assert body.closed


async def test_usage_only_chunk_is_dropped_for_a_caller_that_did_not_ask_but_still_counts():
    items, _ = await run([WIRE], keep_usage=False)
    (tail,) = [i.held for i in items if i.held is not None]
    assert tail.choices[0].finish_reason == "stop"  # the finish chunk carries extra_fields
    assert b'"usage":{' not in visible(items)
    assert [i.usage.completion_tokens for i in items if i.usage] == [3]


async def test_one_read_gives_one_relayed_item():
    items, _ = await run([WIRE])
    assert len(items) == 1


@pytest.mark.parametrize(
    ("event", "failure", "message"),
    [
        pytest.param(
            b'event: error\ndata: {"error":{"message":"The server had an error","type":'
            b'"server_error","param":null,"code":null}}\n\n',
            FailureClass.SERVER_ERROR,
            "The server had an error",
            id="error-event",
        ),
        pytest.param(
            b'data: {"error":{"message":"Rate limit reached","type":"requests",'
            b'"param":null,"code":"rate_limit_exceeded"}}\n\n',
            FailureClass.RATE_LIMITED,
            "Rate limit reached",
            id="error-payload",
        ),
        pytest.param(
            b'data: {"id":"chatcmpl-1","choices":"nope"}\n\n',
            FailureClass.SERVER_ERROR,
            "not a chat completion chunk",
            id="malformed-chunk",
        ),
        pytest.param(b'data: {"id":"chatcmpl-1",\n\n', FailureClass.SERVER_ERROR, "invalid JSON"),
    ],
)
async def test_an_error_mid_stream_raises_after_the_events_before_it(event, failure, message):
    first, second = chunk({"content": "a"}), chunk({"content": "b"})
    received: list[RelayedEvents] = []
    body = Body(first, second, event, chunk({"content": "c"}), b"data: [DONE]\n\n")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=SSE, stream=body))
    async with httpx.AsyncClient(transport=transport) as client:
        call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
        with pytest.raises(ProviderError) as caught:
            async for item in provider().stream_events(call, ChunkRelay(False, Redactor(()))):
                received.append(item)

    assert caught.value.failure is failure
    assert message in caught.value.message
    assert b"".join(i.data for i in received).count(b"data: ") == 2
    assert body.closed


@pytest.mark.parametrize("first", [False, True])
async def test_an_error_in_the_same_read_comes_after_the_events_before_it(first):
    error = b'event: error\ndata: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    opening = [chunk({"content": "a"})] if first else []
    wire = b"".join([*opening, chunk({"content": "b"}), chunk({"content": "c"}), error])
    body = Body(*opening, wire.removeprefix(b"".join(opening)))
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=SSE, stream=body))
    received: list[RelayedEvents] = []
    async with httpx.AsyncClient(transport=transport) as client:
        call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
        with pytest.raises(ProviderError, match="overloaded"):
            async for item in provider().stream_events(call, ChunkRelay(False, Redactor(()))):
                received.append(item)
    assert b"".join(i.data for i in received).count(b"data: ") == len(opening) + 2


async def test_a_stream_without_done_is_a_connection_failure():
    with pytest.raises(ProviderError) as caught:
        await run([chunk({"content": "a"})])
    assert caught.value.failure is FailureClass.CONNECTION


async def test_an_upstream_gateways_extra_fields_are_dropped():
    wire = chunk({"content": "hi"}, extra_fields={"provider": "x"}) + b"data: [DONE]\n\n"
    items, _ = await run([chunk({"content": ""}) + wire])
    assert b"extra_fields" not in visible(items)


@pytest.mark.parametrize("around", [0, 3])
async def test_a_secret_in_an_unknown_field_is_masked(around):
    secret = "sk-policy-secret-0123"
    plain = [chunk({"content": f"w{i}"}) for i in range(around)]
    wire = b"".join(
        [
            chunk({"role": "assistant"}),
            *plain,
            chunk({"content": "x"}, note=secret),
            *plain,
            b"data: [DONE]\n\n",
        ]
    )
    items, _ = await run([wire], secrets=(secret,))
    assert secret.encode() not in visible(items)
    assert b"***" in visible(items)
    assert [c["choices"][0]["delta"].get("content") for c in as_chunks(visible(items))][1:] == [
        *(f"w{i}" for i in range(around)),
        "x",
        *(f"w{i}" for i in range(around)),
    ]


async def test_an_error_among_plain_chunks_of_one_read_ends_the_stream_there():
    plain = [chunk({"content": f"w{i}"}) for i in range(4)]
    failing = chunk({"content": "x"}, error={"message": "upstream broke", "type": "server_error"})
    wire = b"".join([*plain[:2], failing, *plain[2:], b"data: [DONE]\n\n"])
    received: list[RelayedEvents] = []
    body = Body(chunk({"role": "assistant"}), wire)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=SSE, stream=body))
    async with httpx.AsyncClient(transport=transport) as client:
        call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
        with pytest.raises(ProviderError, match="upstream broke"):
            async for item in provider().stream_events(call, ChunkRelay(False, Redactor(()))):
                received.append(item)
    assert b"".join(i.data for i in received).count(b"data: ") == 3  # role, w0, w1
