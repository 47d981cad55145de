"""The built-in ``openai`` provider, against a MockTransport playing the OpenAI API,
and at the end over real loopback HTTP against ``tests.fakes.openai_upstream``.

Bodies are OpenAI's real wire format (API reference / openai-python types):
``chat.completion``, ``chat.completion.chunk`` SSE ending in ``data: [DONE]``,
and ``{"error": {message, type, param, code}}`` error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2 as httpx
import pluggy
import pytest
import turnout.contract.hookspecs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import openai as openai_plugin
from turnout.plugins.providers.openai import OpenAIOptions, OpenAIProvider, read_embeddings
from turnout.provider_api import parse_retry_after
from turnout.wire.chat import ChatChunk, ChatRequest

from tests.fakes.openai_upstream import FakeOpenAI, Fault

KEY = "sk-test-0123456789abcdef"
URL = "http://upstream.test/v1/chat/completions"
SSE = {"content-type": "text/event-stream; charset=utf-8"}
Handler = Callable[[httpx.Request], httpx.Response]

REQUEST: dict[str, Any] = {
    "model": "smart",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi"},
    ],
    "temperature": 0.2,
    "fallbacks": ["anthropic/claude-sonnet-4-5"],
    "reasoning_effort": "low",  # a vendor field the schema does not know
}

COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hi!",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 3,
        "total_tokens": 22,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_6ec83003ad",
}

TOOL_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": '{\n"location": "Boston, MA"\n}',
                        },
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, **more: Any) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": choices,
        "usage": None,
        **more,
    }


STREAM_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 3,
    "total_tokens": 15,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}

TEXT_CHUNKS = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hel"}, obfuscation="x2"),
    _chunk({"content": "lo"}, obfuscation="Qm7"),
    _chunk({}, "stop"),
    _chunk(None, usage=STREAM_USAGE),
]

TOOL_CHUNKS = [
    _chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": ""},
                }
            ],
            "refusal": None,
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "location"}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '":"Boston"}'}}]}),
    _chunk({}, "tool_calls"),
    _chunk(None, usage=STREAM_USAGE),
]


def sse(*events: dict[str, Any] | str) -> bytes:
    """An SSE body: dicts become ``data: <json>`` events, strings are sent verbatim."""
    parts = [f"data: {json.dumps(e)}\n\n" if isinstance(e, dict) else e for e in events]
    return "".join(parts).encode()


def openai_error(
    message: str, type: str | None, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class Body(httpx.AsyncByteStream):
    """A response body sent piece by piece, which may then stall or fail.

    Records whether the client closed it and whether it was read to the end.
    """

    def __init__(self, *pieces: bytes, stall: bool = False, fail: Exception | None = None) -> None:
        self.pieces = pieces
        self.stall = stall
        self.fail = fail
        self.stalled = asyncio.Event()
        self.closed = False
        self.exhausted = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.stall:
            self.stalled.set()
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        self.exhausted = True

    async def aclose(self) -> None:
        self.closed = True


class Upstream:
    """Plays the OpenAI API: answers every request with ``reply``, records what it got."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response]) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def answer(
    status: int = 200,
    body: Any = COMPLETION,
    headers: dict[str, str] | None = None,
) -> Upstream:
    if isinstance(body, bytes):
        return Upstream(lambda request: httpx.Response(status, headers=headers, content=body))
    return Upstream(lambda request: httpx.Response(status, headers=headers, json=body))


def streaming(
    *pieces: bytes, headers: dict[str, str] | None = None, **body: Any
) -> tuple[Upstream, Body]:
    stream = Body(*pieces, **body)
    return Upstream(
        lambda request: httpx.Response(200, headers=headers or SSE, stream=stream)
    ), stream


def provider(**settings: Any) -> OpenAIProvider:
    settings.setdefault("headers", {"OpenAI-Organization": "org-turnout"})
    return OpenAIProvider(
        ProviderSettings(
            name="openai", type="openai", base_url="http://upstream.test/v1", **settings
        )
    )


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., ProviderCall]]:
    """``connect(handler, **request_fields)``: a ProviderCall whose client talks to ``handler``."""
    clients: list[httpx.AsyncClient] = []

    def make(
        handler: Handler,
        *,
        api_key: str | None = KEY,
        timeout: float | None = 5,
        client_timeout: httpx.Timeout | None = None,
        **fields: Any,
    ) -> ProviderCall:
        client = httpx.AsyncClient(
            transport=httpx.MockTransport(handler), timeout=client_timeout or httpx.Timeout(5.0)
        )
        clients.append(client)
        request = ChatRequest.model_validate({**REQUEST, **fields})
        return ProviderCall(
            request=request, model="gpt-4o", api_key=api_key, client=client, timeout=timeout
        )

    yield make
    for client in clients:
        await client.aclose()


async def fails(
    call: ProviderCall,
    *,
    stream: bool = False,
    using: OpenAIProvider | None = None,
    **settings: Any,
) -> ProviderError:
    """The ProviderError that ``chat`` (or ``stream``, consumed) raises for ``call``."""
    under_test = using or provider(**settings)
    with pytest.raises(ProviderError) as caught:
        if stream:
            async for _ in under_test.stream(call):
                pass
        else:
            await under_test.chat(call)
    return caught.value


async def collect(call: ProviderCall, **settings: Any) -> list[ChatChunk]:
    return [chunk async for chunk in provider(**settings).stream(call)]


# --------------------------------------------------------------------------
# chat: what is sent
# --------------------------------------------------------------------------


async def test_sends_the_request_with_the_upstream_model_and_without_turnout_fields(connect):
    upstream = answer()
    await provider().chat(connect(upstream, stream=True, stream_options={"include_usage": True}))

    (request,) = upstream.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert upstream.body == {
        "model": "gpt-4o",
        "messages": REQUEST["messages"],
        "temperature": 0.2,
        "reasoning_effort": "low",
    }


async def test_sends_the_key_and_the_configured_headers(connect):
    upstream = answer()
    await provider(headers={"OpenAI-Organization": "org-turnout", "OpenAI-Project": "proj_1"}).chat(
        connect(upstream)
    )

    headers = upstream.requests[0].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["openai-organization"] == "org-turnout"
    assert headers["openai-project"] == "proj_1"
    assert headers["content-type"] == "application/json"


async def test_without_a_key_sends_no_authorization_but_a_configured_one(connect):
    upstream = answer()
    await provider(headers={}).chat(connect(upstream, api_key=None))
    assert "authorization" not in upstream.requests[0].headers

    await provider(headers={"Authorization": "Token local"}).chat(connect(upstream, api_key=None))
    assert upstream.requests[1].headers.get_list("authorization") == ["Token local"]

    await provider(headers={"Authorization": "Token local"}).chat(connect(upstream))
    assert upstream.requests[2].headers.get_list("authorization") == [f"Bearer {KEY}"]


async def test_timeouts_are_capped_by_what_the_attempt_has_left(connect):
    upstream = answer()
    configured = httpx.Timeout(30.0, connect=2.0)
    await provider().chat(connect(upstream, timeout=5, client_timeout=configured))
    await provider().chat(connect(upstream, timeout=None, client_timeout=configured))

    capped, default = (r.extensions["timeout"] for r in upstream.requests)
    assert capped == {"connect": 2.0, "read": 5, "write": 5, "pool": 5}
    assert default == {"connect": 2.0, "read": 30.0, "write": 30.0, "pool": 30.0}


# --------------------------------------------------------------------------
# chat: what is returned
# --------------------------------------------------------------------------


async def test_parses_a_completion_with_usage(connect):
    response = await provider().chat(connect(answer()))

    assert response.id == COMPLETION["id"]
    assert response.model == "gpt-4o-2024-08-06"
    assert response.choices[0].message.content == "Hi!"
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (19, 3)
    assert response.usage.prompt_tokens_details == {"cached_tokens": 0, "audio_tokens": 0}
    assert response.service_tier == "default"
    assert response.extra_fields is None
    assert (
        response.model_dump(mode="json", exclude_unset=True, exclude={"extra_fields"}) == COMPLETION
    )


async def test_parses_tool_calls(connect):
    response = await provider().chat(connect(answer(body=TOOL_COMPLETION)))

    (choice,) = response.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls == TOOL_COMPLETION["choices"][0]["message"]["tool_calls"]
    assert response.usage.total_tokens == 99


async def test_raw_response_only_when_asked(connect):
    plain = await provider().chat(connect(answer()))
    raw = await provider(raw_response=True).chat(connect(answer()))

    assert plain.extra_fields is None
    assert raw.extra_fields.raw_response == COMPLETION
    raw.choices[0].message.content = "changed"
    assert raw.extra_fields.raw_response["choices"][0]["message"]["content"] == "Hi!"


async def test_an_upstream_gateways_extra_fields_are_not_passed_on(connect):
    body = COMPLETION | {"extra_fields": {"provider": "openai", "latency": 812, "cost": 9.0}}
    response = await provider().chat(connect(answer(body=body)))
    assert response.extra_fields is None


# --------------------------------------------------------------------------
# chat: failures
# --------------------------------------------------------------------------

ERRORS = [
    pytest.param(
        400,
        openai_error(
            "Invalid value for 'temperature'.", "invalid_request_error", None, "temperature"
        ),
        {},
        FailureClass.BAD_REQUEST,
        None,
        id="400-invalid-request",
    ),
    pytest.param(
        400,
        openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130017 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        {},
        FailureClass.CONTEXT_LENGTH,
        "context_length_exceeded",
        id="400-context-length",
    ),
    pytest.param(
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. "
            "However, you requested 5000 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        {},
        FailureClass.CONTEXT_LENGTH,
        None,
        id="400-vllm-context-length",
    ),
    pytest.param(
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 9000,
                "n_ctx": 8192,
            }
        },
        {},
        FailureClass.CONTEXT_LENGTH,
        None,
        id="400-llamacpp-context-size",
    ),
    pytest.param(
        400,
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
            }
        },
        {},
        FailureClass.CONTENT_FILTER,
        "content_filter",
        id="400-content-filter",
    ),
    pytest.param(
        400,
        openai_error(
            "Your request was rejected as a result of our safety system.",
            "invalid_request_error",
            "content_policy_violation",
        ),
        {},
        FailureClass.CONTENT_FILTER,
        "content_policy_violation",
        id="400-content-policy",
    ),
    pytest.param(
        401,
        openai_error(
            "Incorrect API key provided: sk-bad. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        {},
        FailureClass.AUTH,
        "invalid_api_key",
        id="401",
    ),
    pytest.param(
        403,
        openai_error(
            "Project `proj_1` does not have access to model `gpt-4o`",
            "invalid_request_error",
            "model_not_found",
        ),
        {},
        FailureClass.AUTH,
        "model_not_found",
        id="403",
    ),
    pytest.param(
        404,
        openai_error(
            "The model `gpt-9` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        {},
        FailureClass.NOT_FOUND,
        "model_not_found",
        id="404",
    ),
    pytest.param(408, b"", {}, FailureClass.TIMEOUT, None, id="408"),
    pytest.param(
        413,
        b"<html><body><h1>413 Request Entity Too Large</h1></body></html>",
        {"content-type": "text/html"},
        FailureClass.CONTEXT_LENGTH,
        None,
        id="413-html",
    ),
    pytest.param(
        429,
        openai_error(
            "Rate limit reached for gpt-4o in organization org-turnout on tokens "
            "per min (TPM): Limit 30000, Used 29000, Requested 2000.",
            "tokens",
            "rate_limit_exceeded",
        ),
        {"retry-after": "2", "x-ratelimit-reset-tokens": "2s"},
        FailureClass.RATE_LIMITED,
        "rate_limit_exceeded",
        id="429-retry-after-seconds",
    ),
    pytest.param(
        429,
        openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        {},
        FailureClass.AUTH,
        "insufficient_quota",
        id="429-insufficient-quota",
    ),
    pytest.param(
        500,
        openai_error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        {},
        FailureClass.SERVER_ERROR,
        None,
        id="500",
    ),
    pytest.param(
        502,
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        {"content-type": "text/html"},
        FailureClass.SERVER_ERROR,
        None,
        id="502-html",
    ),
    pytest.param(
        503,
        openai_error(
            "The engine is currently overloaded, please try again later.", "server_error", None
        ),
        {"retry-after-ms": "1500"},
        FailureClass.OVERLOADED,
        None,
        id="503-retry-after-ms",
    ),
    pytest.param(504, b"upstream request timeout", {}, FailureClass.TIMEOUT, None, id="504"),
    pytest.param(
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {},
        FailureClass.OVERLOADED,
        None,
        id="529",
    ),
]


@pytest.mark.parametrize(("status", "body", "headers", "failure", "code"), ERRORS)
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_error_statuses_are_classified(connect, status, body, headers, failure, code, stream):
    error = await fails(connect(answer(status, body, headers)), stream=stream)

    assert error.failure is failure
    assert error.status_code == status
    assert error.code == code
    if isinstance(body, dict):
        assert error.message == (body.get("error") or body)["message"]
    else:
        assert error.message.startswith(f"upstream returned HTTP {status}")


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
async def test_retry_after_is_reported_in_seconds(connect, headers, retry_after):
    error = await fails(
        connect(answer(429, openai_error("slow down", "requests", "rate_limit_exceeded"), headers))
    )
    assert error.retry_after == retry_after


async def test_retry_after_as_an_http_date(connect):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = await fails(
        connect(answer(429, openai_error("slow down", "requests", None), {"Retry-After": when}))
    )
    assert 28 <= error.retry_after <= 30


async def test_error_messages_never_contain_the_key(connect):
    echo = openai_error(
        f"Incorrect API key provided: {KEY}.", "invalid_request_error", "invalid_api_key"
    )
    error = await fails(connect(answer(401, echo)))
    assert KEY not in str(error)
    assert error.message == "Incorrect API key provided: ***."


async def test_a_redirect_says_where_base_url_should_point(connect):
    error = await fails(
        connect(answer(301, b"", {"location": "https://upstream.test/v1/chat/completions"}))
    )
    assert error.failure is FailureClass.BAD_REQUEST
    assert "https://upstream.test/v1/chat/completions" in error.message
    assert "base_url" in error.message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(b'{"id": "chatcmpl-1", "choices": [', ["invalid JSON"], id="truncated"),
        pytest.param(b"<html>Service Unavailable</html>", ["invalid JSON"], id="html"),
        pytest.param(
            b'{"object": "list", "data": []}', ["not a chat completion", "id"], id="wrong-shape"
        ),
        pytest.param(
            b'{"id": "x", "model": "m", "choices": [{"message": 3}]}',
            ["not a chat completion", "choices.0.message"],
            id="bad-choice",
        ),
    ],
)
async def test_a_200_that_is_not_a_completion_is_a_server_error(connect, body, words):
    error = await fails(connect(answer(200, body)))
    assert error.failure is FailureClass.SERVER_ERROR
    for word in words:
        assert word in error.message


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        (
            openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
            FailureClass.RATE_LIMITED,
        ),
        (
            openai_error("context too long", "invalid_request_error", "context_length_exceeded"),
            FailureClass.CONTEXT_LENGTH,
        ),
        ({"error": {"code": 503, "message": "upstream overloaded"}}, FailureClass.OVERLOADED),
        ({"error": {"message": "something broke"}}, FailureClass.SERVER_ERROR),
        ({"error": "model 'llama3' not found"}, FailureClass.SERVER_ERROR),
    ],
)
async def test_a_200_with_an_error_body_is_classified_from_the_body(connect, body, failure):
    error = await fails(connect(answer(200, body)))
    assert error.failure is failure
    assert error.message == (
        body["error"]["message"] if isinstance(body["error"], dict) else body["error"]
    )


async def test_a_completion_carrying_an_error_is_an_error_but_a_null_error_is_not(connect):
    failed = COMPLETION | {"error": {"code": 502, "message": "Provider returned error"}}
    error = await fails(connect(answer(200, failed)))
    assert (error.failure, error.message) == (FailureClass.SERVER_ERROR, "Provider returned error")

    response = await provider().chat(connect(answer(200, COMPLETION | {"error": None})))
    assert response.choices[0].message.content == "Hi!"


def raising(exc: type[httpx.RequestError], message: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(message, request=request)

    return handler


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (httpx.ConnectTimeout, FailureClass.TIMEOUT),
        (httpx.ReadTimeout, FailureClass.TIMEOUT),
        (httpx.PoolTimeout, FailureClass.TIMEOUT),
        (httpx.ConnectError, FailureClass.CONNECTION),
        (httpx.RemoteProtocolError, FailureClass.CONNECTION),
        (httpx.ReadError, FailureClass.CONNECTION),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_transport_failures(connect, exc, failure, stream):
    error = await fails(connect(raising(exc, "boom")), stream=stream)
    assert error.failure is failure
    assert "boom" in error.message
    assert isinstance(error.__cause__, exc)


async def test_chat_does_not_swallow_cancellation(connect):
    body = Body(b'{"id": "chatcmpl-1", ', stall=True)
    call = connect(Upstream(lambda request: httpx.Response(200, stream=body)))
    task = asyncio.create_task(provider().chat(call))
    await body.stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


# --------------------------------------------------------------------------
# stream
# --------------------------------------------------------------------------


async def test_stream_yields_chunks_in_order_up_to_done(connect):
    upstream, body = streaming(sse(*TEXT_CHUNKS, "data: [DONE]\n\n"))
    chunks = await collect(connect(upstream))

    first, *rest = TEXT_CHUNKS  # a delta keeps no nulls: "refusal": null is no refusal
    first_delta = {"role": "assistant", "content": ""}
    expected = [{**first, "choices": [{**first["choices"][0], "delta": first_delta}]}, *rest]
    assert [c.model_dump(mode="json", exclude_unset=True) for c in chunks] == expected
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 3)
    assert chunks[1].model_extra == {"service_tier": "default", "obfuscation": "x2"}
    assert body.closed


async def test_stream_request_asks_for_a_stream_with_usage(connect):
    upstream, _ = streaming(sse(*TEXT_CHUNKS, "data: [DONE]\n\n"))
    await collect(connect(upstream))

    request = upstream.requests[0]
    assert str(request.url) == URL
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert upstream.body == {
        "model": "gpt-4o",
        "messages": REQUEST["messages"],
        "temperature": 0.2,
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("caller", "options", "sent"),
    [
        pytest.param(None, {}, {"include_usage": True}, id="unset-added"),
        pytest.param(
            {"include_usage": False}, {}, {"include_usage": False}, id="caller-false-kept"
        ),
        pytest.param({"include_usage": True}, {}, {"include_usage": True}, id="caller-true-kept"),
        pytest.param(
            {"include_obfuscation": False},
            {},
            {"include_obfuscation": False, "include_usage": True},
            id="other-option-kept",
        ),
        pytest.param(None, {"stream_usage": False}, None, id="option-off"),
    ],
)
async def test_stream_options(connect, caller, options, sent):
    upstream, _ = streaming(sse(*TEXT_CHUNKS, "data: [DONE]\n\n"))
    fields = {} if caller is None else {"stream_options": caller}
    await collect(connect(upstream, **fields), options=OpenAIOptions(**options))
    assert upstream.body.get("stream_options") == sent


def test_options_reject_unknown_keys():
    with pytest.raises(ValidationError):
        OpenAIOptions.model_validate({"stream_usgae": False})


async def test_stream_tool_call_deltas(connect):
    upstream, _ = streaming(sse(*TOOL_CHUNKS, "data: [DONE]\n\n"))
    chunks = await collect(
        connect(
            upstream,
            tools=[
                {
                    "type": "function",
                    "function": {"name": "get_current_weather", "parameters": {"type": "object"}},
                }
            ],
        )
    )

    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0]["id"] == "call_DdmO9pD3xa9XTPNJ32zg2hcA"
    assert calls[0]["function"]["name"] == "get_current_weather"
    assert json.loads("".join(call["function"]["arguments"] for call in calls)) == {
        "location": "Boston"
    }
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.total_tokens == 15


async def test_stream_ignores_comments_and_keepalives(connect):
    upstream, _ = streaming(
        sse(
            ": OPENROUTER PROCESSING\n\n",
            TEXT_CHUNKS[0],
            ": ping\n\n",
            *TEXT_CHUNKS[1:],
            "data: [DONE]\n\n",
        )
    )
    assert len(await collect(connect(upstream))) == len(TEXT_CHUNKS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=1), max_size=12), crlf=st.booleans())
def test_stream_is_the_same_however_the_network_splits_it(cuts, crlf):
    wire = sse(*TOOL_CHUNKS, "data: [DONE]\n\n")
    if crlf:
        wire = wire.replace(b"\n", b"\r\n")
    points = sorted({cut % len(wire) for cut in cuts} - {0})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]

    async def run() -> list[dict[str, Any]]:
        upstream, _ = streaming(*pieces)
        async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
            call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
            return [c.model_dump() async for c in provider().stream(call)]

    assert asyncio.run(run()) == [ChatChunk.model_validate(c).model_dump() for c in TOOL_CHUNKS]


async def test_after_done_the_body_is_read_to_the_end(connect):
    upstream, body = streaming(sse(*TEXT_CHUNKS, "data: [DONE]\n\n"), b"\n")
    await collect(connect(upstream))
    assert body.exhausted


async def test_stream_without_done_is_a_connection_failure(connect):
    upstream, body = streaming(sse(*TEXT_CHUNKS))
    received: list[ChatChunk] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider().stream(connect(upstream)):
            received.append(chunk)

    assert caught.value.failure is FailureClass.CONNECTION
    assert caught.value.message == "stream ended before [DONE]"
    assert len(received) == len(TEXT_CHUNKS)
    assert body.closed


async def test_stream_broken_mid_way_is_a_connection_failure(connect):
    upstream, body = streaming(sse(*TEXT_CHUNKS[:2]), fail=httpx.ReadError("connection reset"))
    received: list[ChatChunk] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider().stream(connect(upstream)):
            received.append(chunk)

    assert caught.value.failure is FailureClass.CONNECTION
    assert len(received) == 2
    assert body.closed


@pytest.mark.parametrize(
    ("event", "failure", "message"),
    [
        pytest.param(
            'event: error\ndata: {"error": {"message": "The server had an error while '
            'processing your request.", "type": "server_error", "param": null, "code": null}}\n\n',
            FailureClass.SERVER_ERROR,
            "The server had an error while processing your request.",
            id="error-event",
        ),
        pytest.param(
            "event: error\ndata: upstream went away\n\n",
            FailureClass.SERVER_ERROR,
            "upstream sent an error event: upstream went away",
            id="error-event-text",
        ),
        pytest.param(
            'data: {"error": {"message": "Rate limit reached", "type": "requests", "param": null, '
            '"code": "rate_limit_exceeded"}}\n\n',
            FailureClass.RATE_LIMITED,
            "Rate limit reached",
            id="error-payload",
        ),
        pytest.param(
            sse(
                _chunk(
                    {"content": ""},
                    "error",
                    error={"code": 502, "message": "Provider disconnected"},
                )
            ).decode(),
            FailureClass.SERVER_ERROR,
            "Provider disconnected",
            id="error-in-a-chunk",
        ),
        pytest.param(
            'data: {"id": "chatcmpl-123", "choices": "nope"}\n\n',
            FailureClass.SERVER_ERROR,
            "not a chat completion chunk",
            id="malformed-chunk",
        ),
    ],
)
async def test_an_error_mid_stream_raises_after_the_chunks_before_it(
    connect, event, failure, message
):
    upstream, body = streaming(sse(*TEXT_CHUNKS[:2], event, *TEXT_CHUNKS[2:], "data: [DONE]\n\n"))
    received: list[ChatChunk] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider().stream(connect(upstream)):
            received.append(chunk)

    assert caught.value.failure is failure
    assert message in caught.value.message
    assert len(received) == 2
    assert body.closed


async def test_a_chunk_with_a_null_error_is_a_chunk(connect):
    upstream, _ = streaming(sse(_chunk({"content": "hi"}, error=None), "data: [DONE]\n\n"))
    (chunk,) = await collect(connect(upstream))
    assert chunk.choices[0].delta.content == "hi"


async def test_stream_answered_with_json_is_classified(connect):
    upstream, _ = streaming(
        json.dumps(openai_error("quota", "insufficient_quota", "insufficient_quota")).encode(),
        headers={"content-type": "application/json"},
    )
    assert (await fails(connect(upstream), stream=True)).failure is FailureClass.AUTH

    upstream, _ = streaming(
        json.dumps(COMPLETION).encode(), headers={"content-type": "application/json"}
    )
    error = await fails(connect(upstream), stream=True)
    assert error.failure is FailureClass.SERVER_ERROR
    assert "not text/event-stream" in error.message


async def test_stream_drops_an_upstream_gateways_extra_fields(connect):
    upstream, _ = streaming(
        sse(_chunk({"content": "hi"}, extra_fields={"provider": "openai"}), "data: [DONE]\n\n")
    )
    (chunk,) = await collect(connect(upstream))
    assert chunk.extra_fields is None


async def test_consumer_that_stops_early_closes_the_upstream(connect):
    upstream, body = streaming(sse(*TEXT_CHUNKS[:2]), stall=True)
    chunks = provider().stream(connect(upstream))
    first = await anext(chunks)
    assert first.choices[0].delta.role == "assistant"
    assert not body.closed

    await chunks.aclose()
    assert body.closed


async def test_cancelling_a_stream_closes_the_upstream(connect):
    upstream, body = streaming(sse(*TEXT_CHUNKS[:2]), stall=True)
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in provider().stream(connect(upstream)):
            received.append(chunk)

    task = asyncio.create_task(consume())
    await body.stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(received) == 2
    assert body.closed


# --------------------------------------------------------------------------
# classification properties
# --------------------------------------------------------------------------

_codes = st.sampled_from(
    [
        None,
        "rate_limit_exceeded",
        "model_not_found",
        "invalid_api_key",
        "context_length_exceeded",
        "content_filter",
        "insufficient_quota",
        "server_error",
        500,
        429,
        "unknown_code",
    ]
)
_types = st.sampled_from(
    [
        None,
        "invalid_request_error",
        "server_error",
        "requests",
        "tokens",
        "insufficient_quota",
        "overloaded_error",
        "api_error",
    ]
)
_messages = st.one_of(st.text(max_size=80), st.text(max_size=80).map(lambda t: f"{t} {KEY}"))
_json_errors = st.builds(
    lambda m, t, c: json.dumps({"error": {"message": m, "type": t, "code": c}}).encode(),
    _messages,
    _types,
    _codes,
)
_header_values = st.one_of(
    st.sampled_from(["2", "0.5", "-1", "inf", "nan", "1e309", "Wed, 21 Oct 2015 07:28:00 GMT"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
_other_bodies = st.one_of(
    st.binary(max_size=60), st.just(b""), st.just(b"<html>Bad Gateway</html>")
)


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(min_value=300, max_value=599),
    body=st.one_of(_json_errors, _other_bodies),
    retry_after=st.one_of(st.none(), _header_values),
)
def test_any_error_status_fails_with_a_sensible_class(status, body, retry_after):
    """Whatever an upstream answers, the provider raises one ProviderError: an outage
    (5xx) or a rate limit (429) is never blamed on the caller, which would stop the
    engine from falling back; a body that explains nothing leaves the status to decide;
    the key never appears; retry_after is a usable number of seconds or None."""
    headers = {} if retry_after is None else {"retry-after": retry_after}

    async def run() -> ProviderError:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(answer(status, body, headers))
        ) as client:
            call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
            with pytest.raises(ProviderError) as caught:
                await provider().chat(call)
            return caught.value

    error = asyncio.run(run())
    assert error.status_code == status
    assert KEY not in error.message
    if status >= 500 or status == 429:
        assert error.failure not in (FailureClass.BAD_REQUEST, FailureClass.CANCELLED)
    if not body.startswith(b'{"error"'):
        assert error.failure is FailureClass.from_status(status)
    assert error.retry_after is None or (
        math.isfinite(error.retry_after) and error.retry_after >= 0
    )


_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),  # digits, any script
    st.sampled_from(["503", "429"]),
)


@settings(max_examples=100, deadline=None)
@given(
    error=st.dictionaries(st.sampled_from(["message", "type", "code", "param"]), _json_values),
    stream=st.booleans(),
)
def test_any_error_object_in_a_200_is_classified(error, stream):
    """An error object of any shape, in a 200 body or mid-stream, ends in one ProviderError
    (never a crash in the error path), with a numeric code read as an HTTP status."""
    body = json.dumps({"error": error}).encode()
    wire = sse(TEXT_CHUNKS[0]) + b"data: " + body + b"\n\n" if stream else body
    headers = SSE if stream else {"content-type": "application/json"}

    async def run() -> ProviderError:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(answer(200, wire, headers))
        ) as client:
            call = ProviderCall(ChatRequest.model_validate(REQUEST), "gpt-4o", KEY, client)
            return await fails(call, stream=stream)

    failure = asyncio.run(run()).failure
    code = error.get("code")
    if code in ("503", 503) and not isinstance(code, bool):
        assert failure is FailureClass.OVERLOADED


@given(seconds=st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_retry_after_seconds_round_trip(seconds):
    assert parse_retry_after({"retry-after": repr(seconds)}) == seconds
    assert parse_retry_after({"retry-after-ms": repr(seconds)}) == pytest.approx(seconds / 1000)


@given(delay=st.integers(min_value=-86_400, max_value=10 * 365 * 86_400))
def test_retry_after_dates_are_seconds_from_now(delay):
    now = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    header = email.utils.formatdate(now + delay, usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=now) == max(0, delay)


@given(value=st.text(max_size=40))
def test_retry_after_never_raises_and_is_never_negative(value):
    for name in ("retry-after", "retry-after-ms"):
        seconds = parse_retry_after({name: value})
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


# --------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------


def test_registers_the_openai_type_through_the_public_hook():
    manager = pluggy.PluginManager(turnout.contract.hookspecs.PROJECT)
    manager.add_hookspecs(turnout.contract.hookspecs)
    manager.register(openai_plugin)
    registered: dict[str, type] = {}
    manager.hook.turnout_register_providers(register=registered.__setitem__)

    assert registered == {"openai": OpenAIProvider}
    assert OpenAIProvider.default_base_url == "https://api.openai.com/v1"
    assert OpenAIProvider.requires_api_key is True


async def test_without_a_base_url_calls_openai(connect):
    upstream = answer()
    await OpenAIProvider(ProviderSettings(name="openai", type="openai")).chat(connect(upstream))
    assert str(upstream.requests[0].url) == "https://api.openai.com/v1/chat/completions"


# --------------------------------------------------------------------------
# over real loopback HTTP
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def loopback(fake_openai) -> AsyncIterator[tuple[FakeOpenAI, OpenAIProvider, ProviderCall]]:
    fake_openai.reset()
    loopback_provider = OpenAIProvider(
        ProviderSettings(name="openai", type="openai", base_url=fake_openai.base_url)
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
        request = ChatRequest.model_validate(
            {"model": "smart", "messages": [{"role": "user", "content": "hi there"}]}
        )
        yield fake_openai, loopback_provider, ProviderCall(request, "gpt-4o", KEY, client, 5)


async def test_loopback_chat_and_streams_keep_one_connection_alive(loopback):
    fake, loopback_provider, call = loopback
    response = await loopback_provider.chat(call)
    assert response.choices[0].message.content == "echo: hi there"
    assert response.usage.completion_tokens > 0

    for _ in range(2):
        chunks = [chunk async for chunk in loopback_provider.stream(call)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: hi there"
        assert chunks[-1].choices == []
        assert chunks[-1].usage.total_tokens == response.usage.total_tokens

    assert fake.connection_count == 1  # streams were read to the end, not cut off
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("fault", "stream", "failure"),
    [
        (Fault.status(429, retry_after=1), False, FailureClass.RATE_LIMITED),
        (Fault.status(503), True, FailureClass.OVERLOADED),
        (Fault.reset(), False, FailureClass.CONNECTION),
        (Fault.reset_mid_body(), True, FailureClass.CONNECTION),
        (Fault.truncated_stream(), True, FailureClass.CONNECTION),
        (Fault.malformed_json(), False, FailureClass.SERVER_ERROR),
        (Fault.malformed_json(), True, FailureClass.SERVER_ERROR),
        (Fault.error_body_200(), True, FailureClass.SERVER_ERROR),
        (Fault.stall_after_first(), False, FailureClass.TIMEOUT),
        (Fault.stall_after_first(), True, FailureClass.TIMEOUT),
    ],
    ids=str,
)
async def test_loopback_faults(loopback, fault, stream, failure):
    fake, loopback_provider, call = loopback
    fake.script(fault)
    call.timeout = 0.3
    error = await fails(call, stream=stream, using=loopback_provider)
    assert error.failure is failure
    if failure is FailureClass.RATE_LIMITED:
        assert error.retry_after == 1.0


def test_embeddings_answers_are_read_in_index_order_and_checked() -> None:
    packed = base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()
    body = json.dumps({
        "data": [{"index": 1, "embedding": packed}, {"index": 0, "embedding": [1, 2.5]}],
        "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }).encode()  # fmt: skip
    answer = read_embeddings(body, 2, None)
    assert answer.vectors == [[1, 2.5], [0.5, -1.0]] and answer.prompt_tokens == 3
    for broken in (
        {"data": [{"index": 0, "embedding": [1.0]}]},  # one vector for two inputs
        {"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [2]}]},
        {"data": [{"index": 0, "embedding": "abc"}, {"index": 1, "embedding": [2]}]},
        {"data": "nope"},
    ):
        with pytest.raises(ProviderError) as info:
            read_embeddings(json.dumps(broken).encode(), 2, None)
        assert info.value.failure is FailureClass.SERVER_ERROR
