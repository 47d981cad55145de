"""What sends the engine's upstream requests?

    python benchmarks/http_transports.py [--requests 2000] [--streams 1000] [--rounds 5]

Client CPU time per request and requests/s against the fake OpenAI upstream,
one request at a time and 32 in flight, for: httpx2's own transport
(httpcore2 over anyio), httpx2 over `httpx_aiohttp.httpx2.AiohttpTransport`
(PyPI `httpx-aiohttp`, if installed), httpx2 over `turnout.upstream.transport.AiohttpTransport`
(the `TURNOUT_UPSTREAM_TRANSPORT=aiohttp` opt-out), each through
`turnout.upstream.clients.PooledClient` as a provider would use it, aiohttp's
`ClientSession` alone (the floor of the aiohttp path), and the `Upstream`s
providers send through: `HttpxUpstream` over the aiohttp transport and
`turnout.upstream.h1_upstream.H1Upstream` (turnout's own HTTP/1.1 client, the
default). Then the same per stream (a streamed completion of the fake's
default reply, read chunk by chunk) for aiohttp alone and the two `Upstream`s.
The upstream runs pinned to core 1, this process to core 0; the rounds are
interleaved and each cell is the median over them. CPU time is this thread's
(`time.thread_time`), so the upstream's share is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx2 as httpx  # noqa: E402
from turnout.upstream.clients import PooledClient  # noqa: E402
from turnout.upstream.h1_upstream import H1Upstream  # noqa: E402
from turnout.upstream.interface import HttpxUpstream, UpstreamRequest  # noqa: E402
from turnout.upstream.transport import AiohttpTransport  # noqa: E402

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}'
STREAM_BODY = BODY.replace(
    b'{"model": "gpt-4o-mini", ', b'{"model": "gpt-4o-mini", "stream": true, '
)
HEADERS = {"content-type": "application/json", "authorization": "Bearer bench"}
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def candidates() -> dict[str, Callable[[], Any] | None]:
    found: dict[str, Callable[[], Any] | None] = {
        "httpx2 own transport": lambda: PooledClient(limits=LIMITS),
    }
    try:
        from httpx_aiohttp.httpx2 import AiohttpTransport as ThirdParty

        found["httpx2 + httpx-aiohttp"] = lambda: PooledClient(transport=ThirdParty(limits=LIMITS))
    except ImportError:
        pass
    found["httpx2 + engine.transport"] = lambda: PooledClient(
        transport=AiohttpTransport(limits=LIMITS)
    )
    found["aiohttp alone (floor)"] = None
    found["HttpxUpstream + engine.transport"] = lambda: HttpxUpstream(
        PooledClient(transport=AiohttpTransport(limits=LIMITS), timeout=60.0)
    )
    found["H1Upstream (turnout's own)"] = lambda: H1Upstream(max_connections=100)
    return found


STREAMERS = (
    "aiohttp alone (floor)",
    "HttpxUpstream + engine.transport",
    "H1Upstream (turnout's own)",
)


async def _close(target: Any) -> None:
    if isinstance(target, HttpxUpstream):
        await target.client.aclose()
    else:
        await target.aclose()


async def measure(
    make: Callable[[], Any] | None, url: str, n: int, in_flight: int, stream: bool = False
) -> tuple[float, float]:
    one: Callable[[], Awaitable[None]]
    body = STREAM_BODY if stream else BODY
    if make is None:
        session = aiohttp.ClientSession(auto_decompress=False)

        async def one() -> None:
            async with session.post(url, data=body, headers=HEADERS) as response:
                if stream:
                    async for _ in response.content.iter_any():
                        pass
                else:
                    await response.read()

        close = session.close
    else:
        client = make()
        if isinstance(client, HttpxUpstream | H1Upstream):
            request = UpstreamRequest(url, body, HEADERS, timeout=60.0)

            async def one() -> None:
                if stream:
                    async with client.stream(request) as reply:
                        async for _ in reply.chunks():
                            pass
                        assert reply.status_code == 200
                else:
                    reply = await client.send(request)
                    assert reply.status_code == 200

        else:

            async def one() -> None:
                response = await client.post(url, content=BODY, headers=HEADERS)
                assert response.status_code == 200

        async def close() -> None:
            await _close(client)

    for _ in range(200):
        await one()

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker(n // in_flight) for _ in range(in_flight)))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    await close()
    return cpu / n * 1e6, n / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    two_cores = (os.cpu_count() or 1) >= 2
    if two_cores:
        os.sched_setaffinity(0, {0})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    upstream = subprocess.Popen(
        [*(["taskset", "-c", "1"] if two_cores else []), sys.executable,
         "-m", "tests.fakes.openai_upstream", "--port", str(port), "--loop", "uvloop"],
        cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        import uvloop

        async def run_all() -> dict[tuple[str, str, int], list[tuple[float, float]]]:
            results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
            for _ in range(args.rounds):
                for name, make in candidates().items():
                    for in_flight in (1, 32):
                        cell = await measure(make, url, args.requests, in_flight)
                        results.setdefault(("request", name, in_flight), []).append(cell)
                for name, make in candidates().items():
                    if name in STREAMERS:
                        for in_flight in (1, 32):
                            cell = await measure(make, url, args.streams, in_flight, stream=True)
                            results.setdefault(("stream", name, in_flight), []).append(cell)
            return results

        results = uvloop.run(run_all())
    finally:
        upstream.terminate()
        upstream.wait(10)
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'':7} {'client':34} {'in flight':>9} {'CPU µs/each':>12} {'/s':>7} {'vs aiohttp':>10}")
    medians = {
        key: (statistics.median(c[0] for c in cells), statistics.median(c[1] for c in cells))
        for key, cells in results.items()
    }
    for (kind, name, in_flight), (cpu, rps) in medians.items():
        floor = medians.get((kind, "aiohttp alone (floor)", in_flight))
        ratio = f"{cpu / floor[0]:10.2f}" if floor else ""
        print(f"{kind:7} {name:34} {in_flight:9} {cpu:12.0f} {rps:7.0f} {ratio}")
    print(
        f"medians of {args.rounds} rounds x {args.requests} requests / {args.streams} streams;"
        f" load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
