"""Which httpx-API client should sit under the engine's pooled upstream client?

Compares `httpx` 0.28 and `httpx2` 2.16 `AsyncClient` (and, for information,
both with an aiohttp-backed transport from `httpx-aiohttp`) against the fake
OpenAI upstream, on plain asyncio and on uvloop:

1. sequential, one pooled connection: requests/s, and the client's own CPU
   time per request (p50/p99, µs). That is its overhead: while it waits for
   the upstream the process sleeps, so thread CPU time is all client-side work;
2. concurrent, 64 requests in flight: requests/s and mean client CPU/request;
3. sequential again after that burst, with the connections it opened idle in
   the pool (a gateway between bursts): client CPU/request p50.

The upstream runs in a subprocess pinned to core 1 (uvloop, 20-word replies)
and this process pins itself to core 0. Every client is one `AsyncClient`
reused with keep-alive, `post(json=...)` then `response.json()`, as a provider
plugin would. Each cell is the median of 5 runs; runs of the different clients
are interleaved so that drift hits all of them alike.

    python benchmarks/http_clients.py                    # ~2-3 minutes
    python benchmarks/http_clients.py --quick            # smoke run
    python benchmarks/http_clients.py --raw benchmarks/raw/http_clients.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Summarise the plot of Hamlet in one sentence, please."},
    ],
    "temperature": 0.2,
    "max_tokens": 64,
}
PATH = "/chat/completions"
LIMIT = 100  # max connections and max keep-alive connections, for every client


# ---------------------------------------------------------------- clients


def _httpx_client(module_name: str, aiohttp_transport: str | None) -> Callable[[str], Any]:
    def make(base_url: str) -> Any:
        module = importlib.import_module(module_name)
        limits = module.Limits(max_connections=LIMIT, max_keepalive_connections=LIMIT)
        options: dict[str, Any] = {"base_url": base_url, "timeout": 30.0}
        if aiohttp_transport is None:
            options["limits"] = limits
        else:
            transport_module = importlib.import_module(aiohttp_transport)
            options["transport"] = transport_module.AiohttpTransport(limits=limits)
        return module.AsyncClient(**options)

    return make


@dataclass(frozen=True)
class Candidate:
    name: str
    make: Callable[[str], Any]
    needs: tuple[str, ...]
    informational: bool = False

    def available(self) -> bool:
        try:
            for module in self.needs:
                importlib.import_module(module)
        except ImportError:
            return False
        return True


CANDIDATES = [
    Candidate("httpx", _httpx_client("httpx", None), ("httpx",)),
    Candidate("httpx2", _httpx_client("httpx2", None), ("httpx2",)),
    Candidate(
        "httpx+aiohttp",
        _httpx_client("httpx", "httpx_aiohttp"),
        ("httpx", "httpx_aiohttp"),
        informational=True,
    ),
    Candidate(
        "httpx2+aiohttp",
        _httpx_client("httpx2", "httpx_aiohttp.httpx2"),
        ("httpx2", "httpx_aiohttp.httpx2"),
        informational=True,
    ),
]


# ---------------------------------------------------------------- measuring


@dataclass
class Run:
    seq_rps: float
    seq_cpu_p50_us: float
    seq_cpu_p99_us: float
    seq_wall_p50_us: float
    conc_rps: float
    conc_cpu_us: float
    idle64_cpu_p50_us: float  # sequential again, after the burst left idle connections
    upstream_cpu: float  # share of its core the upstream used in the concurrent phase


RAW_FIELDS = [f.name for f in fields(Run)]


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _one(client: Any) -> None:
    response = await client.post(PATH, json=BODY)
    if response.status_code != 200:
        raise RuntimeError(f"upstream answered {response.status_code}: {response.text[:200]}")
    response.json()


async def _concurrent(client: Any, total: int, in_flight: int) -> None:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _one(client)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def _sequential(client: Any, count: int) -> tuple[float, list[float], list[float]]:
    """Seconds taken, and per-request client CPU and wall times in µs."""
    cpu: list[float] = []
    wall: list[float] = []
    gc.collect()
    started = time.perf_counter()
    for _ in range(count):
        cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
        await _one(client)
        wall.append((time.perf_counter_ns() - wall0) / 1000)
        cpu.append((time.thread_time_ns() - cpu0) / 1000)
    return time.perf_counter() - started, cpu, wall


async def measure(
    candidate: Candidate, base_url: str, upstream_pid: int, sequential: int, concurrent: int
) -> Run:
    async with _client(candidate, base_url) as client:
        for _ in range(50):
            await _one(client)
        seq_seconds, cpu, wall = await _sequential(client, sequential)

        await _concurrent(client, 256, 64)  # opens 64 connections
        gc.collect()
        upstream0 = _process_cpu_seconds(upstream_pid)
        cpu0 = time.process_time()
        started = time.perf_counter()
        await _concurrent(client, concurrent, 64)
        conc_seconds = time.perf_counter() - started
        conc_cpu = time.process_time() - cpu0
        upstream_cpu = (_process_cpu_seconds(upstream_pid) - upstream0) / conc_seconds

        _, idle_cpu, _ = await _sequential(client, sequential)  # burst's connections idle

    return Run(
        seq_rps=sequential / seq_seconds,
        seq_cpu_p50_us=_percentile(cpu, 0.50),
        seq_cpu_p99_us=_percentile(cpu, 0.99),
        seq_wall_p50_us=_percentile(wall, 0.50),
        conc_rps=concurrent / conc_seconds,
        conc_cpu_us=conc_cpu / concurrent * 1e6,
        idle64_cpu_p50_us=_percentile(idle_cpu, 0.50),
        upstream_cpu=upstream_cpu,
    )


@contextlib.asynccontextmanager
async def _client(candidate: Candidate, base_url: str) -> AsyncIterator[Any]:
    client = candidate.make(base_url)
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------- the upstream


@contextlib.contextmanager
def upstream(core: int, reply_words: int) -> Any:
    command = [
        sys.executable, "-m", "tests.fakes.openai_upstream", "--port", "0",
        "--reply-words", str(reply_words), "--loop", "auto",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), *command], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if " on " not in line:
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        yield line.split(" on ")[1].split()[0], proc.pid, line.strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------- reporting


def _versions() -> dict[str, str]:
    names = ["httpx", "httpcore", "httpx2", "httpcore2", "anyio", "uvloop", "aiohttp"]
    names.append("httpx-aiohttp")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: nproc={os.cpu_count()}, CPU {cpu}, {platform.platform()}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"libraries: {versions}",
    ]


COLUMNS = [
    ("seq_rps", "sequential req/s", "{:,.0f}"),
    ("seq_cpu_p50_us", "seq client CPU/req p50 (µs)", "{:,.0f}"),
    ("seq_cpu_p99_us", "seq client CPU/req p99 (µs)", "{:,.0f}"),
    ("conc_rps", "64 in flight req/s", "{:,.0f}"),
    ("conc_cpu_us", "client CPU/req at 64 (µs)", "{:,.0f}"),
    ("idle64_cpu_p50_us", "CPU/req p50 after the burst (µs)", "{:,.0f}"),
    ("upstream_cpu", "upstream core busy at 64", "{:.0%}"),
]


def table(results: dict[tuple[str, str], Cell], loops: list[str], names: list[str]) -> list[str]:
    """Markdown: medians per loop and client, then httpx2/httpx ratios."""
    lines = ["| loop | client | " + " | ".join(title for _, title, _ in COLUMNS) + " |"]
    lines.append("|---|---|" + "---:|" * len(COLUMNS))
    for loop in loops:
        for name in names:
            cell = results[loop, name]
            values = [fmt.format(cell.median(key)) for key, _, fmt in COLUMNS]
            lines.append(f"| {loop} | {name} | " + " | ".join(values) + " |")
    lines += ["", "| loop | httpx2 / httpx | " + " | ".join(t for _, t, _ in COLUMNS[:-1]) + " |"]
    lines.append("|---|---|" + "---:|" * (len(COLUMNS) - 1))
    for loop in loops:
        if (loop, "httpx") in results and (loop, "httpx2") in results:
            old, new = results[loop, "httpx"], results[loop, "httpx2"]
            ratios = [f"{new.median(key) / old.median(key):.2f}" for key, _, _ in COLUMNS[:-1]]
            lines.append(f"| {loop} | ratio | " + " | ".join(ratios) + " |")
    lines += ["", "Run-to-run spread, (max - min) / median:", ""]
    lines.append("| loop | client | " + " | ".join(title for _, title, _ in COLUMNS[:-1]) + " |")
    lines.append("|---|---|" + "---:|" * (len(COLUMNS) - 1))
    for loop in loops:
        for name in names:
            cell = results[loop, name]
            spreads = []
            for key, _, _ in COLUMNS[:-1]:
                values = [getattr(run, key) for run in cell.runs]
                spreads.append(f"{(max(values) - min(values)) / cell.median(key):.0%}")
            lines.append(f"| {loop} | {name} | " + " | ".join(spreads) + " |")
    return lines


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=500, help="requests per run")
    parser.add_argument("--concurrent", type=int, default=1500, help="requests per run")
    parser.add_argument("--reply-words", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1 run, few requests")
    parser.add_argument("--raw", type=Path, help="also write every run here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.sequential, args.concurrent = 1, 100, 300

    os.sched_setaffinity(0, {0})
    # Other work on a shared machine skews the numbers; a higher priority (root
    # only) for this process and the upstream it starts keeps most of it away.
    with contextlib.suppress(PermissionError):
        os.nice(-10)
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    with contextlib.suppress(ImportError):
        import uvloop

        loops["uvloop"] = uvloop.new_event_loop
    candidates = [c for c in CANDIDATES if c.available()]
    skipped = [c.name for c in CANDIDATES if not c.available()]

    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    say("# benchmarks/http_clients.py")
    say("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    for line in machine():
        say(line)
    say(
        f"settings: runs={args.runs} sequential={args.sequential} concurrent={args.concurrent} "
        f"in_flight=64 reply_words={args.reply_words} pool={LIMIT} client_core=0 upstream_core=1 "
        f"nice={os.nice(0)} load_before={os.getloadavg()[0]:.2f}"
    )
    if skipped:
        say(f"skipped (not installed): {', '.join(skipped)}")

    results: dict[tuple[str, str], Cell] = {}
    started = time.perf_counter()
    with upstream(1, args.reply_words) as (base_url, pid, banner):
        say(f"upstream: {banner}")
        say()
        say("loop run client " + " ".join(RAW_FIELDS))
        for loop_name, factory in loops.items():
            with asyncio.Runner(loop_factory=factory) as runner:
                for run_index in range(args.runs):
                    for candidate in candidates:
                        run = runner.run(
                            measure(candidate, base_url, pid, args.sequential, args.concurrent)
                        )
                        results.setdefault((loop_name, candidate.name), Cell()).runs.append(run)
                        values = " ".join(f"{getattr(run, f):.2f}" for f in RAW_FIELDS)
                        say(f"{loop_name} {run_index + 1} {candidate.name} {values}")
    say()
    say(f"load average after: {os.getloadavg()[0]:.2f}")
    say(f"elapsed: {time.perf_counter() - started:.0f} s; medians of {args.runs} runs:")
    say()
    for line in table(results, list(loops), [c.name for c in candidates]):
        say(line)
    if args.raw:
        args.raw.parent.mkdir(parents=True, exist_ok=True)
        args.raw.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
