"""In-process microbenchmarks of the engine: plan resolution and the whole pipeline.

    python benchmarks/bench_engine.py [--rounds 5] [--n 20000]

Each case is timed per call with perf_counter_ns; a round reports p50/p99, and
the table shows the median over rounds. Baselines are measured in the same run:
request validation alone (the floor under planning) and the mock provider's
own ``chat()`` called directly (the floor under the pipeline), so the ratios
say what the engine adds on this machine, today.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout import ChatRequest, Engine  # noqa: E402
from turnout.contract.provider import ProviderCall  # noqa: E402

BODY = {"model": "smart", "messages": [{"role": "user", "content": "Hello, how are you?"}]}
DIRECT = {**BODY, "model": "mock/echo"}
STRATEGIES = """
providers: {mock: {type: mock}}
models:
  mock/t0: {input_per_mtok: 3, output_per_mtok: 15}
  mock/t1: {input_per_mtok: 1, output_per_mtok: 2}
  mock/t2: {input_per_mtok: 0.15, output_per_mtok: 0.6}
routes:
""" + "".join(
    f"  - {{name: {s}, match: {{model: {s}}}, strategy: {s}, "
    "targets: [{model: mock/t0, weight: 3}, mock/t1, mock/t2]}\n"
    for s in ("weighted", "ordered", "lowest_latency", "least_busy", "cheapest", "sticky")
)


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # ns → µs


def time_sync(fn: Callable[[], object], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


async def time_async(fn: Callable[[], Awaitable[object]], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append(clock() - t0)
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


async def run(rounds: int, n: int) -> dict[str, list[tuple[float, float]]]:
    engine = Engine.from_file(ROOT / "routes.yaml", env={}, autoload=False, rng=random.Random(0))
    request = ChatRequest.model_validate(BODY)
    direct_request = ChatRequest.model_validate(DIRECT)
    mock = engine.table.providers["mock"].provider
    call = ProviderCall(direct_request, "echo", None, client_factory=lambda: None)  # type: ignore[arg-type,return-value]

    async def stream_all() -> None:
        async for _ in engine.stream(DIRECT):
            pass

    sync_cases: dict[str, Callable[[], object]] = {
        "baseline: validate request": lambda: ChatRequest.model_validate(BODY),
        "plan (route 'smart', 3 candidates)": lambda: engine.plan(request),
        "plan (direct provider/model)": lambda: engine.plan(direct_request),
    }
    strategies = Engine.from_yaml(STRATEGIES, env={}, autoload=False, rng=random.Random(0))
    for i in range(3):  # give latency-aware strategies figures to read
        strategies.stats.observe(f"mock/t{i}", 0.05 * (i + 1))
    for name in ("weighted", "ordered", "lowest_latency", "least_busy", "cheapest", "sticky"):
        body = ChatRequest.model_validate({**BODY, "model": name, "user": "user-42"})
        sync_cases[f"plan, strategy {name} (3 targets)"] = (
            lambda body=body: strategies.plan(body)  # type: ignore[misc]
        )
    async_cases: dict[str, Callable[[], Awaitable[object]]] = {
        "baseline: mock provider chat() alone": lambda: mock.chat(call),
        "pipeline: chat, direct mock/echo": lambda: engine.chat(DIRECT),
        "pipeline: chat, route 'smart' (fallback to mock)": lambda: engine.chat(BODY),
        "pipeline: stream, mock/echo (5 chunks)": stream_all,
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in [*sync_cases, *async_cases]}
    for fn in sync_cases.values():  # warm-up
        time_sync(fn, 2000)
    for afn in async_cases.values():
        await time_async(afn, 2000)
    gc.collect()
    for _ in range(rounds):
        for name, fn in sync_cases.items():
            samples = time_sync(fn, n)
            results[name].append((percentile(samples, 0.5), percentile(samples, 0.99)))
        for name, afn in async_cases.items():
            samples = await time_async(afn, n)
            results[name].append((percentile(samples, 0.5), percentile(samples, 0.99)))
    await engine.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    try:
        import uvloop

        loop_name = "uvloop"
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        loop_name, runner = "asyncio", asyncio.run
    results = runner(run(args.rounds, args.n))
    medians = {
        k: (statistics.median(p for p, _ in v), statistics.median(q for _, q in v))
        for k, v in results.items()
    }
    validate = medians["baseline: validate request"][0]
    provider = medians["baseline: mock provider chat() alone"][0]
    print(f"machine: {machine()}; loop: {loop_name}; {args.rounds} rounds x {args.n} calls")
    print(f"{'case':52} {'p50 µs':>8} {'p99 µs':>8} {'p50 ratio':>10}")
    for name, (p50, p99) in medians.items():
        base = validate if name.startswith(("plan", "baseline: validate")) else provider
        print(f"{name:52} {p50:8.2f} {p99:8.2f} {p50 / base:9.1f}x")


if __name__ == "__main__":
    main()
