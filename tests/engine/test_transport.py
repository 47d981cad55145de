"""What the engine's pooled clients send with: turnout's own HTTP/1.1 client
(``H1Upstream``, the default) and the httpx2 client over the aiohttp-backed
transport or httpx2's own.

Every provider-level test that touches the wire runs over all three, so each
is held to what httpx2's own transport does: same failure classes, same
connection reuse; the httpx2-level tests run over both httpx2 transports.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx2 as httpx
import pytest
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers.openai import OpenAIProvider
from turnout.upstream.clients import TRANSPORT_ENV, ClientPool, PooledClient, post_bytes
from turnout.upstream.h1_upstream import H1Upstream
from turnout.upstream.interface import HttpxUpstream, Upstream, UpstreamRequest
from turnout.upstream.transport import AiohttpTransport, map_exception
from turnout.wire.chat import ChatRequest

from tests.conftest import user
from tests.fakes.faults import Fault
from tests.fakes.openai_upstream import FakeOpenAI

KEY = "sk-test-transport-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


def make_transport(name: str, limits: httpx.Limits | None = None) -> httpx.AsyncBaseTransport:
    limits = limits or httpx.Limits()
    if name == "aiohttp":
        return AiohttpTransport(limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


@pytest.fixture(params=["aiohttp", "httpx2"])
async def client(request, fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    """The engine's pooled client over each transport: over aiohttp, providers'
    non-streaming calls take ``post_bytes``' fast path, so the fault matrix
    holds that path to what httpx2's own transport does."""
    fake.reset()
    async with PooledClient(
        transport=make_transport(request.param), timeout=httpx.Timeout(5.0)
    ) as pooled:
        yield pooled


@pytest.fixture(params=["h1", "aiohttp", "httpx2"])
async def upstream(request, fake: FakeOpenAI) -> AsyncIterator[Upstream]:
    """What providers send through, over each client the pool can build."""
    fake.reset()
    if request.param == "h1":
        own = H1Upstream(connect_timeout=5.0, read_timeout=5.0)
        yield own
        await own.aclose()
        return
    async with PooledClient(
        transport=make_transport(request.param), timeout=httpx.Timeout(5.0)
    ) as pooled:
        yield HttpxUpstream(pooled)


def call_with(via: httpx.AsyncClient | Upstream, timeout: float = 5) -> ProviderCall:
    request = ChatRequest.model_validate(user("hi there", model="smart"))
    if isinstance(via, httpx.AsyncClient):
        return ProviderCall(request, "gpt-4o", KEY, via, timeout)
    return ProviderCall(request, "gpt-4o", KEY, timeout=timeout, upstream=via)


def openai(fake: FakeOpenAI) -> OpenAIProvider:
    return OpenAIProvider(ProviderSettings(name="openai", type="openai", base_url=fake.base_url))


async def test_chat_and_streams_over_one_kept_alive_connection(upstream, fake) -> None:
    provider = openai(fake)
    response = await provider.chat(call_with(upstream))
    assert response.choices[0].message.content == "echo: hi there"
    for _ in range(2):
        chunks = [chunk async for chunk in provider.stream(call_with(upstream))]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: hi there"
        assert chunks[-1].usage is not None
    assert fake.connection_count == 1
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"


async def test_status_headers_and_reason_are_passed_through(upstream, fake) -> None:
    fake.script(Fault.status(429, retry_after=2), Fault.status(429, retry_after=3))
    body = json.dumps(user(model="m")).encode()
    sent = UpstreamRequest(f"{fake.base_url}/chat/completions", body, {}, timeout=5)
    reply = await upstream.send(sent)
    assert reply.status_code == 429 and not reply.is_success
    assert reply.reason_phrase == "Too Many Requests"
    assert reply.headers["Retry-After"] == reply.headers["retry-after"] == "2"
    assert json.loads(reply.content)["error"]["message"]
    async with upstream.stream(sent) as streamed:
        assert streamed.status_code == 429 and streamed.headers["retry-after"] == "3"
        assert json.loads(await streamed.read())["error"]["message"]


@pytest.mark.parametrize(
    ("fault", "stream", "failure"),
    [
        (Fault.reset(), False, FailureClass.CONNECTION),
        (Fault.reset(), True, FailureClass.CONNECTION),
        (Fault.reset_mid_body(), False, FailureClass.CONNECTION),
        (Fault.reset_mid_body(), True, FailureClass.CONNECTION),
        (Fault.truncated_stream(), False, FailureClass.CONNECTION),
        (Fault.truncated_stream(), True, FailureClass.CONNECTION),
        (Fault.stall_after_first(), False, FailureClass.TIMEOUT),
        (Fault.stall_after_first(), True, FailureClass.TIMEOUT),
        (Fault.delay(2), False, FailureClass.TIMEOUT),
        (Fault.status(503), True, FailureClass.OVERLOADED),
    ],
    ids=str,
)
async def test_wire_faults_keep_their_failure_class(upstream, fake, fault, stream, failure) -> None:
    fake.script(fault)
    provider = openai(fake)
    with pytest.raises(ProviderError) as caught:
        if stream:
            async for _ in provider.stream(call_with(upstream, timeout=0.3)):
                pass
        else:
            await provider.chat(call_with(upstream, timeout=0.3))
    assert caught.value.failure is failure


async def test_a_dropped_connection_is_a_protocol_error_not_a_timeout(client, fake) -> None:
    fake.script(Fault.reset())
    with pytest.raises(httpx.TransportError) as caught:
        await client.post(f"{fake.base_url}/chat/completions", json=user(model="m"))
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert isinstance(caught.value, httpx.RemoteProtocolError | httpx.ReadError)


async def test_a_refused_connection_is_a_connect_error(client) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={})


async def test_a_stalled_read_is_a_read_timeout(client, fake) -> None:
    fake.script(Fault.delay(2))
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{fake.base_url}/chat/completions", json=user(model="m"), timeout=0.2)


async def test_cancelling_a_request_propagates_and_the_client_still_works(client, fake) -> None:
    fake.script(Fault.delay(2))
    task = asyncio.ensure_future(
        client.post(f"{fake.base_url}/chat/completions", json=user(model="m"))
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    response = await client.post(f"{fake.base_url}/chat/completions", json=user(model="m"))
    assert response.status_code == 200


async def test_max_connections_caps_concurrent_connections(fake) -> None:
    fake.reset()
    fake.script(*[Fault.delay(0.1)] * 6)
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(transport=make_transport("aiohttp", limits)) as capped:
        responses = await asyncio.gather(
            *(
                capped.post(f"{fake.base_url}/chat/completions", json=user(model="m"))
                for _ in range(6)
            )
        )
    assert [r.status_code for r in responses] == [200] * 6
    assert fake.connection_count == 2


async def test_a_stream_left_early_does_not_return_its_connection_dirty(fake) -> None:
    fake.reset()
    provider = openai(fake)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as pooled:
        async for _ in provider.stream(call_with(pooled)):
            break
        response = await provider.chat(call_with(pooled))
    assert response.choices[0].message.content == "echo: hi there"


async def test_aclose_closes_the_session_and_is_idempotent(fake) -> None:
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport) as pooled:
        await pooled.post(f"{fake.base_url}/chat/completions", json=user(model="m"))
        session = transport._session
        assert session is not None and not session.closed
    assert session.closed
    await transport.aclose()


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), httpx.WriteError),
        (aiohttp.ConnectionTimeoutError("connect timed out"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read timed out"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("timed out"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            httpx.RemoteProtocolError,
        ),
        (aiohttp.InvalidURL("nope://x"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("something else"), httpx.TransportError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_exception_mapping(raised, expected) -> None:
    mapped = map_exception(raised)
    assert type(mapped) is expected


def test_a_truncated_body_after_a_reset_is_a_read_error() -> None:
    payload = aiohttp.ClientPayloadError("Response payload is not completed")
    payload.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    assert type(map_exception(payload)) is httpx.ReadError


def test_a_refused_connection_maps_to_connect_error() -> None:
    key = type("Key", (), {"ssl": False, "host": "127.0.0.1", "port": 1})()
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    assert type(map_exception(refused)) is httpx.ConnectError


# -- the pool's choice -------------------------------------------------------

POLICY = """
providers:
  up: {{type: openai, base_url: "{url}", api_key: sk-up}}
routes:
  - name: r
    match: {{model: r}}
    targets: [up/gpt-4o]
"""


def test_the_default_transport_is_our_own_http1_client(monkeypatch) -> None:
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert ClientPool().backend == "h1"


def test_the_environment_opts_out_to_aiohttp_or_httpx2s_own_transport(monkeypatch) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, "httpx2")
    assert ClientPool().backend == "httpx2"
    monkeypatch.setenv(TRANSPORT_ENV, " AIOHTTP ")
    assert ClientPool().backend == "aiohttp"
    monkeypatch.setenv(TRANSPORT_ENV, "curl")
    with pytest.raises(ValueError, match=TRANSPORT_ENV):
        ClientPool()


@pytest.mark.parametrize("backend", ["h1", "aiohttp", "httpx2"])
async def test_the_engine_serves_over_each_transport(
    make_engine, fake, monkeypatch, backend
) -> None:
    fake.reset()
    monkeypatch.setenv(TRANSPORT_ENV, backend)
    engine = make_engine(POLICY.format(url=fake.base_url))
    assert engine.clients.backend == backend
    response = await engine.chat(user("over the wire", model="r"))
    assert response.choices[0].message.content == "echo: over the wire"
    chunks = [c async for c in engine.stream(user("and streamed", model="r"))]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    upstream = engine.clients.upstream(engine.table.providers["up"])
    assert isinstance(upstream, H1Upstream) is (backend == "h1")
    assert fake.connection_count == 1


async def test_closing_the_pool_closes_its_own_clients_connections(make_engine, fake) -> None:
    fake.reset()
    engine = make_engine(POLICY.format(url=fake.base_url))
    await engine.chat(user("kept alive", model="r"))
    assert len(fake.server.connections) == 1
    await engine.clients.aclose()
    for _ in range(50):
        if not fake.server.connections:
            break
        await asyncio.sleep(0.01)
    assert not fake.server.connections


async def test_an_environment_proxy_sends_through_the_httpx2_path(make_engine, monkeypatch) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "direct.test")
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    proxied = H1Upstream(
        fallback=lambda: HttpxUpstream(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    )
    reply = await proxied.send(UpstreamRequest("https://upstream.test/v1/x", b"{}", {}))
    assert reply.status_code == 200 and seen == ["https://upstream.test/v1/x"]
    assert proxied._target("https://direct.test/v1/x").pool is not None
    assert proxied._target("http://plain.test/v1/x").pool is not None
    # the engine's fallback is its httpx2 client on httpx2's own transport, which mounts the proxy
    engine = make_engine(POLICY.format(url="https://upstream.test/v1"))
    provider = engine.table.providers["up"]
    assert isinstance(engine.clients.upstream(provider), H1Upstream)
    assert engine.clients.client(provider)._mounts


async def test_an_injected_transport_wins(make_engine) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "mocked"}})

    engine = make_engine(
        POLICY.format(url="http://upstream.test/v1"), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(Exception, match="mocked"):
        await engine.chat(user(model="r"))


async def test_pooled_clients_reuse_parsed_urls_but_merge_relative_ones() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    async with PooledClient(transport=httpx.MockTransport(handler)) as pooled:
        for _ in range(2):
            await pooled.post("http://upstream.test/v1/chat/completions?x=1")
        url = "http://upstream.test/v1/a"
        assert pooled._merge_url(url) is pooled._merge_url(url)
    async with PooledClient(
        transport=httpx.MockTransport(handler), base_url="http://base.test/v1"
    ) as based:
        await based.get("models")
        based.base_url = "http://other.test/v2"
        await based.get("models")
    assert seen == [
        "http://upstream.test/v1/chat/completions?x=1",
        "http://upstream.test/v1/chat/completions?x=1",
        "http://base.test/v1/models",
        "http://other.test/v2/models",
    ]


async def test_pooled_clients_merge_headers_per_call_and_see_client_header_changes() -> None:
    sent: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(dict(request.headers))
        return httpx.Response(200)

    url = "http://upstream.test/v1/chat/completions"
    async with PooledClient(transport=httpx.MockTransport(handler)) as pooled:
        await pooled.post(url, headers={"authorization": "Bearer one", "x-a": "1"})
        await pooled.post(url, headers={"authorization": "Bearer two", "x-a": "1"})
        await pooled.post(url, headers={"authorization": "Bearer one", "x-a": "1"})
        pooled.headers["x-client"] = "set later"
        await pooled.post(url, headers={"authorization": "Bearer one", "x-a": "1"})
        await pooled.post(url, headers={"x-a": "2", "user-agent": "mine"})
    assert [h["authorization"] for h in sent[:4]] == [
        "Bearer one",
        "Bearer two",
        "Bearer one",
        "Bearer one",
    ]
    assert "x-client" not in sent[2] and sent[3]["x-client"] == "set later"
    assert sent[4]["x-a"] == "2" and sent[4]["user-agent"] == "mine"
    assert "authorization" not in sent[4]


async def test_stream_chunks_arrive_as_the_upstream_sends_them(upstream, fake) -> None:
    fake.script(Fault.chunk_delay(0.05))
    provider = openai(fake)
    started = asyncio.get_running_loop().time()
    arrivals = [
        asyncio.get_running_loop().time() - started
        async for _ in provider.stream(call_with(upstream))
    ]
    assert len(arrivals) >= 3
    assert arrivals[0] < arrivals[-1] - 0.08  # not buffered until the end


async def test_the_fast_post_sends_what_httpx2_sends_and_skips_its_objects(
    fake, monkeypatch
) -> None:
    fake.reset()
    url = f"{fake.base_url}/chat/completions"
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    async with PooledClient(transport=httpx.AsyncHTTPTransport()) as reference:
        await reference.post(url, content=body, headers=headers)
    async with PooledClient(transport=AiohttpTransport(), timeout=5.0) as pooled:

        def no_httpx2_objects(*args, **kwargs):
            raise AssertionError("the fast path built an httpx2 request")

        for _ in range(2):  # the second call uses the cached header list
            reply = await post_bytes(pooled, url, content=body, headers=headers)
            monkeypatch.setattr(httpx.AsyncClient, "send", no_httpx2_objects)
        assert reply.is_success and reply.status_code == 200
        assert b"echo: hi" in reply.content
        assert reply.headers["Content-Type"] == reply.headers["content-type"]
    first, fast, again = fake.requests
    assert fast.headers == first.headers == again.headers
    assert fast.body == first.body


async def test_the_fast_post_decodes_a_compressed_answer_as_httpx2_does() -> None:
    answer = gzip.compress(b'{"ok": true}')

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        await reader.readexactly(2)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(answer) + answer
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, PooledClient(transport=AiohttpTransport()) as pooled:
        reply = await pooled.post_bytes(
            f"http://127.0.0.1:{port}/", content=b"{}", headers={}, timeout=httpx.Timeout(5.0)
        )
    assert reply.content == b'{"ok": true}'


async def test_clients_with_hooks_or_a_plain_client_take_httpx2s_path(fake) -> None:
    fake.reset()
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    url = f"{fake.base_url}/chat/completions"
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    hooked = PooledClient(transport=AiohttpTransport(), event_hooks={"request": [hook]})
    async with hooked, httpx.AsyncClient() as plain:
        for client in (hooked, plain):
            reply = await post_bytes(client, url, content=body, headers={})
            assert reply.status_code == 200 and reply.reason_phrase == "OK"
    assert seen == ["/v1/chat/completions"]


@pytest.mark.parametrize("backend", ["aiohttp", "httpx2"])
async def test_pooled_clients_neither_keep_nor_send_cookies(make_engine, fake, backend) -> None:
    engine = make_engine(POLICY.format(url=fake.base_url))
    engine.clients.backend = backend
    client = engine.clients.client(engine.table.providers["up"])
    answer = httpx.Response(
        200,
        headers={"set-cookie": "__cf_bm=abc; path=/"},
        request=httpx.Request("POST", f"{fake.base_url}/chat/completions"),
    )
    client.cookies.extract_cookies(answer)  # what httpx2 does with every answer
    assert not client.cookies
