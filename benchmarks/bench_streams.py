"""Streams: the gateway's CPU per chunk (issue 18), a revision against another.

Each revision's ``turnout serve`` runs pinned to core 0 (``taskset``), in front
of the fake OpenAI upstream (``tests.fakes.openai_upstream``) on core 1, where
the load (this script's asyncio client, reading every stream to its end) runs
too. A gateway's CPU time (``/proc/<pid>/stat``) over a batch of streams,
divided by the batch, is its CPU per stream; streams of 10 and 100 chunks
(role, words, finish) give the cost of one more chunk: the difference / 90.

Two upstream timings: ``burst`` writes a whole stream at once (the gateway
reads it in one or two reads), ``paced`` waits ``--gap`` between events (a
read per event, as tokens arrive from a real model). Then ``--concurrency``
streams at once, paced, against each revision and against a lean SSE
passthrough (aiohttp in, bytes out, no parsing): streams per second and the
first body byte's p50, next to the upstream's own; and the first byte's p50
with 4 streams at a time (no queue in front of the gateway).

    python benchmarks/bench_streams.py --before <git-ref> [--rounds 5]

Rounds are interleaved across revisions; medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

POLICY = """\
version: 1
providers:
  burst: {{type: openai, base_url: "http://127.0.0.1:{burst}/v1", api_key: bench-key}}
  paced: {{type: openai, base_url: "http://127.0.0.1:{paced}/v1", api_key: bench-key}}
routes:
  - {{name: burst, match: {{model: burst}}, targets: [burst/gpt-4o-mini]}}
  - {{name: paced, match: {{model: paced}}, targets: [paced/gpt-4o-mini]}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # an answer: it is up
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def package(source: Path, into: Path) -> Path:
    """An importable ``turnout`` from a source tree (``engine/`` with ``plugins/``
    inside it, as pyproject maps them); returns the directory for PYTHONPATH."""
    target = into / "turnout"
    shutil.copytree(source / "engine", target)
    shutil.copytree(source / "plugins", target / "plugins")
    return into


def revision(ref: str, into: Path) -> Path:
    """``ref``'s tree, exported with ``git archive``."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", ref, "engine", "plugins"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def floor_app(upstreams: dict[bytes, str]):  # type: ignore[no-untyped-def]
    """The lean passthrough: the request forwarded with aiohttp (to the upstream
    its ``"model"`` names), the upstream's body bytes sent on as they arrive,
    nothing parsed."""
    import aiohttp

    session: aiohttp.ClientSession | None = None
    headers = {"content-type": "application/json"}

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        nonlocal session
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        session = session or aiohttp.ClientSession()
        upstream = upstreams[b"burst" if b'"model": "burst"' in body else b"paced"]
        async with session.post(upstream, data=body, headers=headers) as response:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
            async for data in response.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def serve_floor(port: int, burst: str, paced: str) -> None:
    import uvicorn
    from turnout.http.protocol import CoalescingHttpToolsProtocol

    app = floor_app({b"burst": burst, b"paced": paced})
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        access_log=False,
        log_level="warning",
    )


async def streams(
    url: str, model: str, words: int, count: int, concurrency: int
) -> tuple[float, list[float]]:
    """``count`` streams, ``concurrency`` at a time, each read to its end: the
    seconds it took and each stream's first-byte latency. The reply is "echo:"
    and ``words`` words, one chunk each, after the role chunk; then the finish."""
    import aiohttp

    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(["word"] * words)}],
    }
    firsts: list[float] = []
    left = count

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            async with session.post(url, json=body) as response:
                first = True
                async for _ in response.content.iter_any():
                    if first:
                        firsts.append(time.perf_counter() - started)
                        first = False
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started, firsts


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    python = platform.python_version()
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, Python {python}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git ref of the 'before' revision")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=200, help="streams per CPU sample")
    parser.add_argument("--gap", default="2ms", help="between a paced upstream's events")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--serve-floor", nargs=3, metavar=("PORT", "BURST", "PACED"))
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1], args.serve_floor[2])
        return 0

    load_average = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="turnout-streams-"))
    trees = {
        "before": package(revision(args.before, tmp / "src-before"), tmp / "before"),
        "after": package(ROOT, tmp / "after"),
    }
    burst, paced = free_port(), free_port()
    policy = tmp / "routes.yaml"
    policy.write_text(POLICY.format(burst=burst, paced=paced))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    python = sys.executable
    fake = [python, "-m", "tests.fakes.openai_upstream", "--loop", "uvloop"]
    procs = [
        subprocess.Popen([*pin(1), *fake, "--port", str(burst)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL),
        subprocess.Popen([*pin(1), *fake, "--port", str(paced), "--chunk-delay", args.gap],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL),
    ]  # fmt: skip
    gateways: dict[str, tuple[str, int]] = {}
    for name, tree in trees.items():
        port = free_port()
        proc = subprocess.Popen(
            [*pin(0), python, "-m", "turnout.cli", "serve", "--config", str(policy),
             "--port", str(port), "--no-watch", "--log-format", "json"],
            cwd=tmp, env={**env, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        gateways[name] = (f"http://127.0.0.1:{port}/v1/chat/completions", proc.pid)
    floor_port = free_port()
    paced_url = f"http://127.0.0.1:{paced}/v1/chat/completions"
    burst_url = f"http://127.0.0.1:{burst}/v1/chat/completions"
    floor = subprocess.Popen(
        [*pin(0), python, str(Path(__file__).resolve()), "--before", "-",
         "--serve-floor", str(floor_port), burst_url, paced_url],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    procs.append(floor)
    measured = {**gateways, "lean passthrough": (f"http://127.0.0.1:{floor_port}/", floor.pid)}
    os.sched_setaffinity(0, {1})
    try:
        for url, _ in gateways.values():
            wait_http(url.rsplit("/v1/", 1)[0] + "/health")
        wait_http(f"http://127.0.0.1:{floor_port}/")
        cpu: dict[tuple[str, str, int], list[float]] = {}
        for url, _ in measured.values():  # warm up
            for model in ("burst", "paced"):
                asyncio.run(streams(url, model, 7, 50, 8))
        for _ in range(args.rounds):
            for model in ("burst", "paced"):
                for chunks in (10, 100):
                    for name, (url, pid) in measured.items():
                        count = args.streams if model == "burst" else args.streams // 4
                        before = cpu_seconds(pid)
                        asyncio.run(streams(url, model, chunks - 3, count, 8))
                        spent = (cpu_seconds(pid) - before) / count * 1e6
                        cpu.setdefault((name, model, chunks), []).append(spent)
        load: dict[str, list[tuple[float, float]]] = {}
        targets = {**{n: u for n, (u, _) in gateways.items()}, "lean passthrough":
                   f"http://127.0.0.1:{floor_port}/", "upstream": paced_url}  # fmt: skip
        count = args.concurrency * 3
        light: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, url in targets.items():
                seconds, firsts = asyncio.run(streams(url, "paced", 7, count, args.concurrency))
                load.setdefault(name, []).append((count / seconds, statistics.median(firsts)))
                _, firsts = asyncio.run(streams(url, "paced", 7, 40, 4))
                light.setdefault(name, []).append(statistics.median(firsts))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine()}; load average before: {load_average:.2f}")
    print(f"{args.rounds} rounds; {args.streams} burst / {args.streams // 4} paced streams per "
          f"sample, 8 at a time; paced gap {args.gap}")  # fmt: skip
    print("| upstream | server | CPU µs / 10-chunk stream | / 100-chunk | µs per extra chunk |")
    print("|---|---|---:|---:|---:|")
    per_chunk: dict[tuple[str, str], float] = {}
    for model in ("burst", "paced"):
        for name in measured:
            ten = statistics.median(cpu[(name, model, 10)])
            hundred = statistics.median(cpu[(name, model, 100)])
            per_chunk[(name, model)] = (hundred - ten) / 90
            print(
                f"| {model} | {name} | {ten:.0f} | {hundred:.0f} | {per_chunk[(name, model)]:.1f} |"
            )
    for model in ("burst", "paced"):
        b, a = per_chunk[("before", model)], per_chunk[("after", model)]
        lean = per_chunk[("lean passthrough", model)]
        print(
            f"{model}: per chunk after/before = {a / b:.2f}; over the lean passthrough's: "
            f"before {b - lean:.1f} µs, after {a - lean:.1f} µs"
        )
    print(f"\n{args.concurrency} concurrent paced 10-chunk streams ({count} per round):")
    print("| target | streams/s | first byte p50 ms | first byte p50 ms, 4 at a time |")
    print("|---|---:|---:|---:|")
    medians = {}
    for name, samples in load.items():
        rate = statistics.median(s[0] for s in samples)
        first = statistics.median(s[1] for s in samples) * 1000
        alone = statistics.median(light[name]) * 1000
        medians[name] = (rate, first, alone)
        print(f"| {name} | {rate:.0f} | {first:.2f} | {alone:.2f} |")
    lean, upstream = medians["lean passthrough"], medians["upstream"]
    for name in gateways:
        rate, first, alone = medians[name]
        print(f"{name}: {rate / lean[0]:.2f}x the lean passthrough's rate; first byte "
              f"{first / upstream[1]:.2f}x the upstream's under load, "
              f"{alone / upstream[2]:.2f}x 4 at a time")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
