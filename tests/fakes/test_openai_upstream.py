"""The fake OpenAI upstream, seen through the official SDK and through httpx2.

Each fault is checked from the client's side: what a real client raises or
receives is the contract the engine's tests will rely on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, Fault, RecordedRequest

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    },
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
async def aclient(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="x", max_retries=0, timeout=5
    ) as c:
        yield c


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=fake.base_url, timeout=5) as c:
        yield c


# ---------------------------------------------------------------- success


def test_completion_echoes_the_last_user_message(client: openai.OpenAI) -> None:
    before = int(time.time())
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "gpt-4o-mini"
    assert before <= reply.created <= time.time()
    [choice] = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 3)
    assert reply.usage.total_tokens == 7


def test_echo_keeps_whitespace_and_text_parts(client: openai.OpenAI) -> None:
    content = [{"type": "text", "text": "line one\n  line two"}]
    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": content}],
    )
    assert reply.choices[0].message.content == "echo: line one\n  line two"


def test_ids_are_unique(client: openai.OpenAI) -> None:
    ids = {client.chat.completions.create(model="m", messages=MESSAGES).id for _ in range(3)}
    assert len(ids) == 3


def test_requests_are_recorded(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)
    [request] = fake.requests
    assert isinstance(request, RecordedRequest)
    method, path, headers, body = request
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == "Bearer x"
    assert headers["content-type"] == "application/json"
    assert body == {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.5}
    fake.reset()
    assert fake.requests == []


async def test_stream_sends_word_chunks_then_usage(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {"gpt-4o"}
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, finish, usage = chunks
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == "echo: hello there"
    assert sum(1 for c in body if c.choices[0].delta.content) == 3
    assert [c.choices[0].finish_reason for c in body] == [None] * len(body)
    assert finish.choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert usage.choices == []
    assert usage.usage is not None and usage.usage.total_tokens == 7


async def test_stream_wire_format(http: httpx2.AsyncClient) -> None:
    async with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["transfer-encoding"] == "chunked"
        raw = (await r.aread()).decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all("usage" not in p for p in payloads)  # not asked for: no usage key at all
    assert all(p["choices"] for p in payloads)


def test_tool_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "please call_tool now"}],
        tools=TOOLS,
    )
    [choice] = reply.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")


async def test_tool_call_stream(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "call_tool"}],
        tools=TOOLS,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    [head] = first.tool_calls or []
    assert (head.index, head.type, head.function and head.function.name) == (
        0,
        "function",
        "get_weather",
    )
    assert head.id and head.id.startswith("call_")
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        for call in c.choices[0].delta.tool_calls or []
        if call.function
    )
    assert arguments == "{}"
    assert len(chunks) > 3  # arguments arrive in pieces, as OpenAI sends them
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tools_without_the_trigger_word_echo(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.tool_calls is None


def test_max_tokens_cuts_the_reply(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "one two three four"}]
    reply = client.chat.completions.create(model="m", messages=messages, max_tokens=2)
    assert reply.choices[0].message.content == "echo: one"
    assert reply.choices[0].finish_reason == "length"


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "gpt-4o-mini" in ids


def test_invalid_requests_get_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="m", messages=[])
    assert missing.value.param == "messages"
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/nope\)"):
        client.post("/nope", body={}, cast_to=object)


async def test_unparsable_body_is_a_400(http: httpx2.AsyncClient) -> None:
    r = await http.post(
        "/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "parse the JSON body" in r.json()["error"]["message"]


# ---------------------------------------------------------------- status faults


@pytest.mark.parametrize(
    ("code", "error", "etype"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_status_fault_raises_the_sdk_error(
    fake: FakeOpenAI, client: openai.OpenAI, code: int, error: type[Exception], etype: str
) -> None:
    fake.script(Fault.status(code))
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    exc = caught.value
    assert isinstance(exc, openai.APIStatusError)
    assert exc.status_code == code
    assert exc.type == etype
    assert isinstance(exc.body, dict) and set(exc.body) == {"message", "type", "param", "code"}
    assert "retry-after" not in exc.response.headers


def test_rate_limit_with_retry_after(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(Fault.status(429, retry_after=1))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


async def test_sdk_retry_honours_retry_after(fake: FakeOpenAI) -> None:
    fake.script(Fault.status(429, retry_after=0.2))
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=1) as c:
        start = time.perf_counter()
        reply = await c.chat.completions.create(model="m", messages=MESSAGES)
    assert time.perf_counter() - start >= 0.2
    assert reply.choices[0].message.content == "echo: hello there"
    assert len(fake.requests) == 2


async def test_status_with_custom_body(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    fake.script(
        Fault.status(502, body="<html>bad gateway</html>"), Fault.status(400, body={"x": 1})
    )
    first = await http.post("/chat/completions", json=BODY)
    assert (first.status_code, first.text) == (502, "<html>bad gateway</html>")
    second = await http.post("/chat/completions", json=BODY)
    assert (second.status_code, second.json()) == (400, {"x": 1})


def test_script_is_fifo_then_success(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(Fault.status(503), "status:429")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(fake.requests) == 3


def test_header_fault(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_headers={"x-fake-fault": "status:429,retry_after=2"},
        )
    assert caught.value.response.headers["retry-after"] == "2"
    fake.script(Fault.ok())  # the script wins over the header
    client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        extra_headers={"x-fake-fault": "status:503"},
    )


def test_bad_header_fault_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown fault 'explode'"):
        client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_headers={"x-fake-fault": "explode"},
        )


# ---------------------------------------------------------------- timing faults


async def test_delay(fake: FakeOpenAI, aclient: openai.AsyncOpenAI) -> None:
    fake.script(Fault.delay(0.2))
    start = time.perf_counter()
    await aclient.chat.completions.create(model="m", messages=MESSAGES)
    assert time.perf_counter() - start >= 0.2
    with pytest.raises(openai.APITimeoutError):
        await aclient.chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_headers={"x-fake-fault": "delay:300ms"},
            timeout=0.1,
        )


def test_a_client_giving_up_on_a_delayed_reply_is_counted(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="m", messages=MESSAGES)
    fake.script(Fault.delay(5))
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES, timeout=0.2)
    deadline = time.monotonic() + 2
    while fake.abandoned < 1:
        assert time.monotonic() < deadline, "the closed connection was not noticed"
        time.sleep(0.01)
    assert fake.abandoned == 1  # the answered request is not counted


async def test_chunk_delay_paces_the_stream(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    fake.script(Fault.chunk_delay("40ms"))
    arrivals = []
    async with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as r:
        async for line in r.aiter_lines():
            if line:
                arrivals.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == 6  # role, 3 words, finish, [DONE]
    assert min(gaps) >= 0.03


# ---------------------------------------------------------------- connection faults


def test_reset_is_a_connection_error(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(Fault.reset())
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert isinstance(caught.value.__cause__, httpx2.ReadError)
    assert "reset" in str(caught.value.__cause__).lower()
    client.chat.completions.create(model="m", messages=MESSAGES)


async def test_reset_async_stream(fake: FakeOpenAI, aclient: openai.AsyncOpenAI) -> None:
    fake.script(Fault.reset())
    with pytest.raises(openai.APIConnectionError):
        await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)


async def test_reset_mid_body(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    fake.script(Fault.reset_mid_body())
    received = b""
    async with http.stream("POST", "/chat/completions", json=BODY) as r:
        assert r.status_code == 200
        with pytest.raises(httpx2.ReadError):
            async for part in r.aiter_raw():
                received += part
    assert 0 < len(received) < int(r.headers["content-length"])


async def test_reset_mid_stream(fake: FakeOpenAI, aclient: openai.AsyncOpenAI) -> None:
    fake.script(Fault.reset_mid_body())
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "echo:"]


async def test_truncated_stream(fake: FakeOpenAI, aclient: openai.AsyncOpenAI) -> None:
    fake.script(Fault.truncated_stream())
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(openai.APIConnectionError) as caught:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "echo:"]
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)


async def test_truncated_stream_on_the_wire(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    fake.script(Fault.truncated_stream())
    received = b""
    async with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as r:
        with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
            async for part in r.aiter_bytes():
                received += part
    assert received.count(b"\n\n") == 2  # two whole events, then half of the third
    assert not received.endswith(b"\n\n") and b"[DONE]" not in received


def test_truncated_non_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(Fault.truncated_stream())
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)


async def test_stall_after_first(fake: FakeOpenAI) -> None:
    fake.script(Fault.stall_after_first())
    timeout = httpx2.Timeout(5, read=0.2)
    async with openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="x", max_retries=0, timeout=timeout
    ) as c:
        stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        seen = []
        with pytest.raises(openai.APITimeoutError):
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.role)
    assert seen == ["assistant"]


def test_stop_ends_a_stalled_stream() -> None:
    outcome: list[BaseException] = []
    fake = FakeOpenAI().start()
    fake.script(Fault.stall_after_first())

    def consume() -> None:
        with httpx2.Client(timeout=10) as c:
            try:
                with c.stream("POST", fake.base_url + "/chat/completions", json=BODY) as r:
                    r.read()
            except httpx2.HTTPError as exc:
                outcome.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    while not fake.requests:
        time.sleep(0.01)
    time.sleep(0.05)
    start = time.perf_counter()
    fake.stop()
    reader.join(timeout=5)
    assert time.perf_counter() - start < 1
    assert not reader.is_alive()
    assert outcome and isinstance(outcome[0], httpx2.HTTPError)
    assert f"FakeOpenAI:{fake.port}" not in [t.name for t in threading.enumerate()]


# ---------------------------------------------------------------- body faults


async def test_malformed_json(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    fake.script(Fault.malformed_json())
    r = await http.post("/chat/completions", json=BODY)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_malformed_json_through_the_sdk(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(Fault.malformed_json(), Fault.malformed_json())
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(json.JSONDecodeError):
        list(stream)


async def test_error_body_200(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    fake.script(Fault.error_body_200())
    r = await http.post("/chat/completions", json=BODY)
    assert r.status_code == 200
    assert r.json()["error"]["type"] == "server_error"


def test_error_body_200_through_the_sdk(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(Fault.error_body_200(), Fault.error_body_200())
    reply = client.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices is None  # the SDK does not notice: a provider must check
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="error while processing"):
        list(stream)


# ---------------------------------------------------------------- HTTP/1.1


async def test_keep_alive_reuses_one_connection(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    for _ in range(20):
        assert (await http.post("/chat/completions", json=BODY)).status_code == 200
    assert fake.connection_count == 1


async def test_connection_close_is_honoured(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    r = await http.post("/chat/completions", json=BODY, headers={"connection": "close"})
    assert r.headers["connection"] == "close"
    await http.post("/chat/completions", json=BODY)
    assert fake.connection_count == 2


async def test_chunked_request_body(fake: FakeOpenAI, http: httpx2.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        raw = json.dumps(BODY).encode()
        yield raw[:10]
        yield raw[10:]

    r = await http.post("/chat/completions", content=body())
    assert r.json()["choices"][0]["message"]["content"] == "echo: hello there"
    assert fake.requests[-1].headers["transfer-encoding"] == "chunked"
    assert fake.requests[-1].body == BODY


def test_pipelined_requests_are_answered_in_order(fake: FakeOpenAI) -> None:
    def request(text: str) -> bytes:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
        return (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            f"content-length: {len(body)}\r\n\r\n{body}"
        ).encode()

    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(request("first") + request("second") + b"GET /v1/models HTTP/1.0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.index(b"echo: first") < received.index(b"echo: second")
    assert received.rstrip().endswith(b"}") and b'"object":"list"' in received


# ---------------------------------------------------------------- configuration


async def test_latency_and_reply_words() -> None:
    async with (
        FakeOpenAI(latency="100ms", reply_words=5) as fake,
        openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0) as c,
    ):
        start = time.perf_counter()
        reply = await c.chat.completions.create(model="m", messages=MESSAGES)
        assert time.perf_counter() - start >= 0.1
        stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert reply.choices[0].message.content == "echo: hello there lorem ipsum"
    assert text == "echo: hello there lorem ipsum"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_uvloop_server_resets_too() -> None:
    uvloop = pytest.importorskip("uvloop")
    with (
        FakeOpenAI(loop_factory=uvloop.new_event_loop) as fake,
        openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0) as client,
    ):
        fake.script(Fault.reset())
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        reply = client.chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].message.content == "echo: hello there"


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("status:503", Fault.status(503)),
        ("status:429,retry_after=2", Fault.status(429, retry_after=2)),
        ("delay:200ms", Fault.delay(0.2)),
        ("chunk_delay:0.05", Fault.chunk_delay(0.05)),
        ("reset", Fault.reset()),
        ("stall-after-first", Fault.stall_after_first()),
    ],
)
def test_fault_parse(spec: str, fault: Fault) -> None:
    assert Fault.parse(spec) == fault
    assert Fault.parse(str(fault)) == fault


@pytest.mark.parametrize("spec", ["explode", "status", "status:abc", "reset:1", "delay:1,x=2"])
def test_fault_parse_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        Fault.parse(spec)


def test_cli_serves_until_terminated() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", "0", "--reply-words", "2"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.split(" on ")[1].split()[0]
        reply = httpx2.post(base_url + "/chat/completions", json=BODY, timeout=5)
        assert reply.json()["choices"][0]["message"]["content"] == "echo: hello"
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_port_in_use_fails_in_the_caller(fake: FakeOpenAI) -> None:
    with pytest.raises(OSError):
        FakeOpenAI(port=fake.port).start()


async def test_usable_from_a_running_loop() -> None:
    async with FakeOpenAI() as fake, httpx2.AsyncClient() as http:
        r = await http.get(fake.base_url + "/models")
        assert r.status_code == 200
        await asyncio.sleep(0)
