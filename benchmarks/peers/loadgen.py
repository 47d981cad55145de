"""Open-loop load at a fixed request rate, with time to first token for streams.

    python benchmarks/peers/loadgen.py --url URL --body FILE --rate 200 --duration 10 [--stream]

Request i is sent at t0 + i/rate whatever happened to the earlier ones (the
wrk2 model: a slow server is not rewarded with a slower load), over a pool of
keep-alive connections. Latency is measured from the moment the request is
handed to the connection pool, so waiting for a free connection counts.
For a stream, TTFT is the time to the first `data:` event and the stream
counts as an error unless it ends with `data: [DONE]`.

Prints one JSON object: counts, achieved rate, percentiles (ms), and up to
five error samples. Bounded: `rate * duration` requests, each cut after
`--timeout` seconds, and the whole run after `warmup + duration + 2 * timeout + 10` s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp


def percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p90": None, "p99": None}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99)}


async def one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stream: bool,
    timeout: float,
) -> tuple[float, float | None, str | None]:
    """(latency ms, ttft ms or None, error or None) for one request."""
    start = time.perf_counter()
    ttft: float | None = None
    try:
        async with asyncio.timeout(timeout):
            async with session.post(url, data=body, headers=headers) as response:
                if not stream:
                    payload = await response.read()
                    if response.status != 200:
                        return _ms(start), None, f"HTTP {response.status}: {payload[:200]!r}"
                    return _ms(start), None, None
                tail = b""
                async for chunk in response.content.iter_any():
                    if ttft is None and b"data:" in tail[-8:] + chunk:
                        ttft = _ms(start)
                    tail = (tail + chunk)[-64:]
                if response.status != 200:
                    return _ms(start), ttft, f"HTTP {response.status}: {tail!r}"
                if b"[DONE]" not in tail:
                    return _ms(start), ttft, f"stream did not end with [DONE]: {tail!r}"
                return _ms(start), ttft, None
    except TimeoutError:
        return _ms(start), ttft, f"timeout after {timeout:g}s"
    except aiohttp.ClientError as exc:
        return _ms(start), ttft, f"{type(exc).__name__}: {exc}"


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = Path(args.body).read_bytes()
    headers = {"content-type": "application/json"}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    count = max(1, int(args.rate * args.duration))
    connector = aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        warm = max(1, int(args.rate * args.warmup))
        await _drive(session, args, body, headers, warm)
        started = time.perf_counter()
        results, lag = await _drive(session, args, body, headers, count)
        span = time.perf_counter() - started
    ok = [r for r in results if r[2] is None]
    errors = Counter(r[2] for r in results if r[2] is not None)
    out: dict[str, object] = {
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "error_samples": dict(errors.most_common(5)),
        "rps": len(ok) / span,
        "max_send_lag_ms": lag * 1000,
        "latency_ms": percentiles([r[0] for r in ok]),
    }
    if args.stream:
        out["ttft_ms"] = percentiles([r[1] for r in ok if r[1] is not None])
    return out


async def _drive(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    body: bytes,
    headers: dict[str, str],
    count: int,
) -> tuple[list[tuple[float, float | None, str | None]], float]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    interval = 1 / args.rate
    tasks = []
    lag = 0.0
    for i in range(count):
        due = t0 + i * interval
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            lag = max(lag, now - due)
        tasks.append(
            asyncio.create_task(one(session, args.url, body, headers, args.stream, args.timeout))
        )
    return list(await asyncio.gather(*tasks)), lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file with the JSON request body")
    parser.add_argument("--header", action="append", default=[], metavar="NAME: VALUE")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10, help="seconds of measured load")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of unmeasured load first")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--timeout", type=float, default=10, help="per request, seconds")
    parser.add_argument("--connections", type=int, default=256, help="connection pool limit")
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    # the warm-up's stragglers, then the measured run's, each may take `timeout`
    cap = args.warmup + args.duration + 2 * args.timeout + 10

    async def bounded() -> dict[str, object]:
        async with asyncio.timeout(cap):
            return await run(args)

    with runner:
        result = runner.run(bounded())
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
