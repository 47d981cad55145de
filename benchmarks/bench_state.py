"""What budget accounting costs per request, with each state backend.

    python benchmarks/bench_state.py [--rounds 5] [--n 2000] [--redis redis://...]

Two measurements, each timed per call with perf_counter_ns; a round reports
p50/p99 and the table the median over rounds (rounds of every case interleave,
so drift in machine load hits them alike):

1. ``backend``: one reserve + one release on a single counter, straight on the
   backend (memory, a SQLite file, redis-server on loopback) — the state round
   trips one request makes per attempt.
2. ``pipeline``: ``engine.chat`` on the mock provider (no network), a route with
   a USD budget vs the same route without one (an engine with no limits at all:
   the same-run baseline). With a budget a request makes one read (plan
   restriction), one reserve and one release.

Without ``--redis`` a redis-server is started on a free port if the binary is
installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout import Engine  # noqa: E402
from turnout.state import Hold, Release, StateBackend  # noqa: E402
from turnout.state.memory import MemoryState  # noqa: E402
from turnout.state.redis import RedisState  # noqa: E402
from turnout.state.sqlite import SQLiteState  # noqa: E402

POLICY = """
version: 1
{state}
providers:
  mock: {{type: mock, options: {{usage: {{prompt_tokens: 8, completion_tokens: 2}}}}}}
models:
  mock/paid: {{input_per_mtok: 1, output_per_mtok: 1}}
routes:
  - name: paid
    match: {{model: paid}}
    targets: [mock/paid]
{budget}
"""

BODY = {"model": "paid", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
FAR = 4e9

Case = Callable[[], Awaitable[object]]


def percentiles(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


async def timed(call: Case, n: int) -> tuple[float, float]:
    for _ in range(min(200, n)):
        await call()
    gc.collect()
    gc.disable()
    try:
        out = []
        for _ in range(n):
            t = time.perf_counter_ns()
            await call()
            out.append(time.perf_counter_ns() - t)
    finally:
        gc.enable()
    return percentiles(out)


def round_trip(backend: StateBackend) -> Case:
    hold = Hold("bench|paid|0", 10**18, 10_000_000, FAR)
    release = Release("bench|paid|0", 10_000_000, 9_000_000, FAR)

    async def call() -> None:
        assert await backend.reserve([hold]) == -1
        await backend.release([release])

    return call


def chat(engine: Engine) -> Case:
    async def call() -> object:
        return await engine.chat(BODY)

    return call


@contextlib.contextmanager
def redis_url(given: str | None) -> Iterator[str | None]:
    if given:
        yield given
        return
    try:
        sys.path.insert(0, str(ROOT))
        from tests.redis_server import redis_server

        with redis_server() as url:
            yield url
    except Exception as exc:  # pytest.skip raises a BaseException subclass in tests only
        print(f"# no redis-server: {exc}", file=sys.stderr)
        yield None


def state_lines(kind: str, workdir: Path, redis: str | None) -> str:
    if kind == "memory":
        return "state: {backend: memory}"
    if kind == "sqlite":
        return f"state: {{backend: sqlite, path: '{workdir / 'pipeline.db'}'}}"
    return f"state: {{backend: redis, url: '{redis}', prefix: 'bench:'}}"


async def run(rounds: int, n: int, redis: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-state-"))
    kinds = ["memory", "sqlite"] + (["redis"] if redis else [])
    backends: dict[str, StateBackend] = {
        "memory": MemoryState(),
        "sqlite": SQLiteState(workdir / "backend.db"),
    }
    if redis:
        backends["redis"] = RedisState(redis, prefix="bench-backend:")
    budget = "    budget: {limit: 1000000, window: day}"
    engines = {"no budget": Engine.from_yaml(POLICY.format(state="", budget=""), autoload=False)}
    for kind in kinds:
        text = POLICY.format(state=state_lines(kind, workdir, redis), budget=budget)
        engines[f"budget, {kind}"] = Engine.from_yaml(text, autoload=False)
    cases: dict[str, Case] = {f"reserve+release, {k}": round_trip(b) for k, b in backends.items()}
    cases.update({name: chat(engine) for name, engine in engines.items()})
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, case in cases.items():
            results[name].append(await timed(case, n))
        print(f"# round {r + 1}/{rounds} done", file=sys.stderr)
    base = statistics.median(p50 for p50, _ in results["no budget"])
    print(f"rounds={rounds} n={n} python={sys.version.split()[0]}")
    print("| case | p50 µs | p99 µs | p50 vs no budget |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        p50 = statistics.median(p for p, _ in rows)
        p99 = statistics.median(p for _, p in rows)
        delta = (
            f"{p50 - base:+.1f}" if not name.startswith("reserve") and name != "no budget" else "—"
        )
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {delta} |")
    for engine in engines.values():
        await engine.aclose()
    for backend in backends.values():
        await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--redis", help="redis://host:port/db (default: start redis-server)")
    args = parser.parse_args()
    with redis_url(args.redis) as url:
        asyncio.run(run(args.rounds, args.n, url))


if __name__ == "__main__":
    main()
