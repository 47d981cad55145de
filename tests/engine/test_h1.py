"""turnout's own HTTP/1.1 client (``H1Upstream``) against loopback servers that
write exact bytes: keep-alive, retries, framing, decoding, limits, TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import trustme
from turnout.errors import FailureClass
from turnout.upstream.h1_upstream import H1Upstream
from turnout.upstream.interface import UpstreamError, UpstreamRequest

from tests.fakes.server import CLOSE, RESET, STALL, LoopbackServer, Reply, Request

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


def ok() -> Reply:
    return Reply([(0.0, OK)])


class Script:
    """A handler that answers the n-th request with the n-th reply, and records them."""

    def __init__(self, *replies: Callable[[], Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Reply:
        self.requests.append(request)
        make = (
            self.replies[len(self.requests) - 1] if len(self.requests) <= len(self.replies) else ok
        )
        return make()


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[LoopbackServer, Script]]]:
    servers: list[LoopbackServer] = []

    def start(*replies: Callable[[], Reply]) -> tuple[LoopbackServer, Script]:
        script = Script(*replies)
        server = LoopbackServer(script).start()
        servers.append(server)
        return server, script

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def client() -> AsyncIterator[H1Upstream]:
    upstream = H1Upstream(connect_timeout=2.0, read_timeout=2.0)
    yield upstream
    await upstream.aclose()


def post(
    server: LoopbackServer, body: bytes = b"{}", timeout: float | None = 5.0
) -> UpstreamRequest:
    return UpstreamRequest(
        f"{server.url}/v1/chat/completions",
        body,
        {"content-type": "application/json"},
        timeout=timeout,
    )


async def test_requests_reuse_one_kept_alive_connection_and_send_exact_bytes(serve, client) -> None:
    server, script = serve()
    for body in (b'{"a": 1}', b'{"b": 22}'):
        reply = await client.send(post(server, body))
        assert (reply.status_code, reply.reason_phrase, reply.content) == (200, "OK", b"ok")
        assert reply.headers["Content-Type"] == "text/plain"
    assert server.connection_count == 1
    first = script.requests[0]
    assert first.method == "POST" and first.target == "/v1/chat/completions"
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-length"] == "8" and first.raw == b'{"a": 1}'
    assert first.headers["accept-encoding"] == "gzip, deflate"
    assert script.requests[1].raw == b'{"b": 22}'


async def test_a_kept_alive_connection_the_server_dropped_is_retried_once_on_a_new_one(
    serve, client
) -> None:
    # the second request reaches a connection the server closes without answering
    server, script = serve(ok, lambda: Reply([], CLOSE), ok)
    await client.send(post(server))
    reply = await client.send(post(server, b'{"again": true}'))
    assert reply.content == b"ok"
    assert [r.raw for r in script.requests] == [b"{}", b'{"again": true}', b'{"again": true}']
    assert server.connection_count == 2


async def test_a_connection_closed_while_idle_is_not_used_and_not_counted_a_retry(
    serve, client
) -> None:
    server, script = serve(lambda: Reply([(0.0, OK)], CLOSE), ok)
    await client.send(post(server))
    await asyncio.sleep(0.05)  # the server's FIN arrives while the connection idles
    assert (await client.send(post(server))).content == b"ok"
    assert len(script.requests) == 2 and server.connection_count == 2


@pytest.mark.parametrize(
    "cut",
    [
        Reply([(0.0, b"HTTP/1.1 200 OK\r\ncontent-le")], CLOSE),
        Reply([(0.0, OK[:-1])], CLOSE),
        Reply([(0.0, b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npart")], RESET),
    ],
    ids=["head cut", "body cut", "body reset"],
)
async def test_no_retry_once_bytes_of_an_answer_arrived(serve, client, cut) -> None:
    server, script = serve(ok, lambda: cut)
    await client.send(post(server))
    with pytest.raises(UpstreamError) as caught:
        await client.send(post(server))
    assert caught.value.failure is FailureClass.CONNECTION
    assert len(script.requests) == 2  # sent once, never again
    assert (await client.send(post(server))).content == b"ok"


async def test_a_reset_before_any_answer_byte_is_not_retried(serve, client) -> None:
    server, script = serve(ok, lambda: Reply([], RESET))
    await client.send(post(server))
    with pytest.raises(UpstreamError) as caught:
        await client.send(post(server))
    assert caught.value.failure is FailureClass.CONNECTION and "reset" in caught.value.detail
    assert len(script.requests) == 2


async def test_chunked_answers_stream_chunk_by_chunk(serve, client) -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    steps = [(0.0, head), (0.05, b"5\r\nfirst\r\n"), (0.05, b"6\r\nsecond\r\n0\r\n\r\n")]
    server, _ = serve(lambda: Reply(steps), ok)
    async with client.stream(post(server)) as reply:
        assert reply.status_code == 200 and reply.is_success
        chunks = [chunk async for chunk in reply.chunks()]
    assert chunks == [b"first", b"second"]
    assert (await client.send(post(server))).content == b"ok"
    assert server.connection_count == 1


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
    ],
    ids=["gzip", "deflate", "raw deflate"],
)
async def test_compressed_answers_are_decoded(serve, client, coding, encode) -> None:
    text = b'{"ok": true, "text": "' + b"word " * 200 + b'"}'
    packed = encode(text)
    head = f"HTTP/1.1 200 OK\r\ncontent-encoding: {coding}\r\n".encode()
    whole = head + b"content-length: %d\r\n\r\n" % len(packed) + packed
    chunked = head + b"transfer-encoding: chunked\r\n\r\n"
    chunked += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (packed[:10], packed[10:]) if p)
    server, _ = serve(lambda: Reply([(0.0, whole)]), lambda: Reply([(0.0, chunked + b"0\r\n\r\n")]))
    assert (await client.send(post(server))).content == text
    async with client.stream(post(server)) as reply:
        assert b"".join([c async for c in reply.chunks()]) == text


async def test_an_answer_without_length_is_read_to_the_close(serve, client) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n"
    server, _ = serve(
        lambda: Reply([(0.0, head + b"all of "), (0.05, b"it")], CLOSE),
        lambda: Reply([(0.0, head + b"streamed "), (0.05, b"too")], CLOSE),
    )
    assert (await client.send(post(server))).content == b"all of it"
    async with client.stream(post(server)) as reply:
        assert [c async for c in reply.chunks()] == [b"streamed ", b"too"]
    assert server.connection_count == 2


async def test_megabytes_each_way_arrive_whole_for_a_slow_reader(serve, client) -> None:
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB: reading pauses while it is buffered
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big)
    server, script = serve(lambda: Reply([(0.0, head + big)]), ok)
    received = bytearray()
    async with client.stream(post(server, big)) as reply:
        async for chunk in reply.chunks():
            received += chunk
            await asyncio.sleep(0.001)
    assert received == big and script.requests[0].raw == big
    assert (await client.send(post(server))).content == b"ok"
    assert server.connection_count == 1


async def test_a_body_over_the_cap_fails_as_connection(serve) -> None:
    capped = H1Upstream(max_body=1000)
    big = b"x" * 600
    announced = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + big
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"258\r\n%s\r\n" % big * 2
    bomb = gzip.compress(b"\0" * 100_000)
    zipped = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(bomb)
    server, _ = serve(
        lambda: Reply([(0.0, announced)], STALL),
        lambda: Reply([(0.0, chunked)], STALL),
        lambda: Reply([(0.0, zipped + bomb)]),
    )
    try:
        for _ in range(3):
            with pytest.raises(UpstreamError) as caught:
                await capped.send(post(server))
            assert caught.value.failure is FailureClass.CONNECTION
            assert "size cap" in caught.value.detail
    finally:
        await capped.aclose()


async def test_max_connections_queues_requests_and_the_wait_counts_against_the_deadline(
    serve,
) -> None:
    slow = lambda: Reply([(0.2, OK)])  # noqa: E731
    server, _ = serve(*[slow] * 8)
    capped = H1Upstream(max_connections=2)
    try:
        replies = await asyncio.gather(*(capped.send(post(server)) for _ in range(6)))
        assert [r.content for r in replies] == [b"ok"] * 6
        assert server.connection_count == 2
        busy = [asyncio.ensure_future(capped.send(post(server))) for _ in range(2)]
        await asyncio.sleep(0.02)
        with pytest.raises(UpstreamError) as caught:
            await capped.send(post(server, timeout=0.1))
        assert caught.value.failure is FailureClass.TIMEOUT
        assert "free connection" in caught.value.detail
        await asyncio.gather(*busy)
        assert (await capped.send(post(server))).content == b"ok"
        assert server.connection_count == 2
    finally:
        await capped.aclose()


async def test_a_stream_left_early_closes_its_connection(serve, client) -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    steps = [(0.0, head + b"3\r\none\r\n"), (0.3, b"3\r\ntwo\r\n0\r\n\r\n")]
    server, _ = serve(lambda: Reply(steps), ok)
    async with client.stream(post(server)) as reply:
        async for chunk in reply.chunks():
            assert chunk == b"one"
            break
    assert (await client.send(post(server))).content == b"ok"
    assert server.connection_count == 2


async def test_idle_connections_expire(serve) -> None:
    server, _ = serve()
    brief = H1Upstream(keepalive_expiry=0.1)
    try:
        await brief.send(post(server))
        await asyncio.sleep(0.05)
        await brief.send(post(server))
        assert server.connection_count == 1
        await asyncio.sleep(0.3)
        assert not server.connections  # closed by the client while idle
        await brief.send(post(server))
        assert server.connection_count == 2
    finally:
        await brief.aclose()


async def test_a_stall_past_the_read_timeout_is_a_timeout(serve) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf"
    server, _ = serve(lambda: Reply([(0.0, head)], STALL), lambda: Reply([(5.0, OK)]))
    patient = H1Upstream(read_timeout=0.2)
    try:
        for _ in range(2):  # mid-body, then before the head
            started = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamError) as caught:
                await patient.send(post(server, timeout=None))
            assert caught.value.failure is FailureClass.TIMEOUT
            assert "timed out" in caught.value.detail
            assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await patient.aclose()


async def test_a_slow_stream_is_not_cut_while_its_bytes_keep_coming(serve) -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    steps = [(0.0, head)] + [(0.08, b"1\r\nx\r\n")] * 6 + [(0.0, b"0\r\n\r\n")]
    server, _ = serve(lambda: Reply(steps))
    patient = H1Upstream(read_timeout=0.2)
    try:
        async with patient.stream(post(server, timeout=None)) as reply:
            assert b"".join([c async for c in reply.chunks()]) == b"x" * 6
    finally:
        await patient.aclose()


async def test_the_request_timeout_caps_the_connect_and_every_read(serve, client) -> None:
    server, _ = serve(lambda: Reply([(2.0, OK)]))
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamError) as caught:
        await client.send(post(server, timeout=0.15))
    assert caught.value.failure is FailureClass.TIMEOUT
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_the_connect_is_cut_by_its_timeout_or_the_time_left(client) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never answers the TLS handshake

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    quick = H1Upstream(connect_timeout=0.1)
    async with server:
        for upstream, timeout in ((quick, None), (client, 0.15)):
            started = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamError) as caught:
                await upstream.send(UpstreamRequest(url, b"", {}, timeout=timeout))
            assert caught.value.failure is FailureClass.TIMEOUT
            assert "connecting" in caught.value.detail
            assert asyncio.get_running_loop().time() - started < 0.5
        await quick.aclose()


async def test_refused_and_unresolvable_hosts_are_connection_failures(client) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for url in (f"http://127.0.0.1:{port}/", "http://upstream.invalid/v1"):
        with pytest.raises(UpstreamError) as caught:
            await client.send(UpstreamRequest(url, b"{}", {}, timeout=2))
        assert caught.value.failure is FailureClass.CONNECTION


async def test_cancelling_a_request_leaves_the_client_working(serve, client) -> None:
    server, _ = serve(lambda: Reply([(2.0, OK)]), ok)
    task = asyncio.ensure_future(client.send(post(server)))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await client.send(post(server))).content == b"ok"
    assert server.connection_count == 2


async def test_headers_with_line_breaks_are_never_sent(serve, client) -> None:
    server, script = serve()
    for headers in ({"x-a": "one\r\nx-injected: 1"}, {"x-a\nb": "v"}, {"x-a": "nul\0"}):
        request = UpstreamRequest(f"{server.url}/", b"{}", headers, timeout=2)
        with pytest.raises(UpstreamError, match="refused to send header"):
            await client.send(request)
    assert not script.requests


async def test_bytes_past_the_answer_keep_the_answer_but_not_the_connection(serve, client) -> None:
    surplus = OK + b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
    server, _ = serve(lambda: Reply([(0.0, surplus)]), ok)
    reply = await client.send(post(server))
    assert (reply.status_code, reply.content) == (200, b"ok")
    assert (await client.send(post(server))).content == b"ok"
    assert server.connection_count == 2


async def test_a_status_line_that_is_not_http_is_a_connection_failure(serve, client) -> None:
    server, _ = serve(lambda: Reply([(0.0, b"SSH-2.0-OpenSSH\r\n\r\n")], CLOSE))
    with pytest.raises(UpstreamError) as caught:
        await client.send(post(server))
    assert caught.value.failure is FailureClass.CONNECTION


async def test_aclose_closes_idle_connections(serve) -> None:
    server, _ = serve()
    upstream = H1Upstream()
    await upstream.send(post(server))
    assert len(server.connections) == 1
    await upstream.aclose()
    await asyncio.sleep(0.05)
    assert not server.connections
    with pytest.raises(UpstreamError):
        await upstream.send(post(server))


# -- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_server(ca: trustme.CA) -> tuple[asyncio.Server, list[str]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (line := await reader.readline()) not in (b"\r\n", b""):
                seen.append(line.decode())
            await reader.readexactly(2)
            writer.write(OK)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        seen.append(f"sni:{name}")

    context.sni_callback = sni
    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    return server, seen


async def test_tls_verifies_the_certificate_and_sends_sni(ca) -> None:
    server, seen = await _tls_server(ca)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    upstream = H1Upstream(ssl_context=trusting)
    async with server:
        # localhost resolves to the loopback server; its certificate names localhost
        reply = await upstream.send(
            UpstreamRequest(f"https://localhost:{port}/v1", b"{}", {}, timeout=5)
        )
        assert reply.content == b"ok"
        assert "sni:localhost" in seen
        # a name the certificate does not carry
        with pytest.raises(UpstreamError) as caught:
            await upstream.send(
                UpstreamRequest(f"https://127.0.0.1:{port}/v1", b"{}", {}, timeout=5)
            )
        assert caught.value.failure is FailureClass.CONNECTION
        # a CA nobody trusts
        untrusting = H1Upstream()
        with pytest.raises(UpstreamError) as caught:
            await untrusting.send(
                UpstreamRequest(f"https://localhost:{port}/v1", b"{}", {}, timeout=5)
            )
        assert caught.value.failure is FailureClass.CONNECTION
        assert "certificate" in caught.value.detail.lower()
        await untrusting.aclose()
        await upstream.aclose()


def test_the_default_tls_context_reads_ssl_cert_file(ca, tmp_path, monkeypatch) -> None:
    from turnout.upstream.h1_pool import default_ssl_context

    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    context = default_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
