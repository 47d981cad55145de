"""What binding a gateway key costs per request: planning with a key whose
``models`` restrict its request fallbacks, checking the key, and the whole
``engine.chat`` pipeline with keys on against the same policy without keys.

    python benchmarks/bench_keys.py [--rounds 5] [--n 20000]

Timed like ``bench_engine.py`` (per call, perf_counter_ns; the table shows the
median over rounds of each round's p50/p99). Baselines in the same run: the plan
without a key, and the pipeline of the same policy with no ``keys:``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout import ChatRequest, Engine  # noqa: E402
from turnout.policy.limits import hash_key  # noqa: E402
from turnout.routing.planner import plan_request  # noqa: E402

from benchmarks.bench_engine import machine, percentile, time_async, time_sync  # noqa: E402

SALT = "salt-for-the-key-bench"
KEY = "tk-bench-0001"
POLICY = """
providers: {mock: {type: mock}, other: {type: mock}}
routes:
  - {name: chat, match: {model: chat}, targets: [mock/echo], fallbacks: [mock/fb]}
  - {name: direct, match: {model: "*/*"}}
"""
KEYS = f"""
keys:
  salt: {SALT}
  clients:
    narrow: {{hash: "{hash_key(SALT, KEY)}", models: [chat, "mock/*"]}}
    one: {{hash: "{hash_key(SALT, "tk-other-1")}"}}
    two: {{hash: "{hash_key(SALT, "tk-other-2")}"}}
"""
BODY = {
    "model": "chat",
    "messages": [{"role": "user", "content": "Hello, how are you?"}],
    "fallbacks": ["mock/second", "other/x"],  # one the key may have, one it may not
}
HEADERS = {"authorization": f"Bearer {KEY}"}


async def run(rounds: int, n: int) -> dict[str, list[tuple[float, float]]]:
    open_engine = Engine.from_yaml(POLICY, env={}, autoload=False, rng=random.Random(0))
    keyed = Engine.from_yaml(POLICY + KEYS, env={}, autoload=False, rng=random.Random(0))
    request = ChatRequest.model_validate(BODY)
    keys = keyed.table.limits.keys  # type: ignore[union-attr]
    narrow = keys.authenticate(HEADERS)  # type: ignore[union-attr]
    table, rng = keyed.table, random.Random(0)
    sync_cases: dict[str, Callable[[], object]] = {
        "baseline: plan, no key": lambda: plan_request(request, table, rng=rng),
        "plan, key with models (2 request fallbacks checked)": lambda: plan_request(
            request, table, rng=rng, key=narrow
        ),
        "check the key (3 keys; the gateway does it twice)": lambda: keys.authenticate(HEADERS),  # type: ignore[union-attr]
    }
    async_cases: dict[str, Callable[[], Awaitable[object]]] = {
        "baseline: pipeline chat, no keys": lambda: open_engine.chat(BODY),
        "pipeline chat, keys on (key checked, fallbacks bound)": lambda: keyed.chat(
            BODY, headers=HEADERS
        ),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in [*sync_cases, *async_cases]}
    for fn in sync_cases.values():
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
    await open_engine.aclose()
    await keyed.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    try:
        import uvloop

        loop_name, runner = "uvloop", uvloop.run
    except ImportError:  # pragma: no cover
        loop_name, runner = "asyncio", asyncio.run
    results = runner(run(args.rounds, args.n))
    medians = {
        k: (statistics.median(p for p, _ in v), statistics.median(q for _, q in v))
        for k, v in results.items()
    }
    plan = medians["baseline: plan, no key"][0]
    pipeline = medians["baseline: pipeline chat, no keys"][0]
    print(f"machine: {machine()}; loop: {loop_name}; {args.rounds} rounds x {args.n} calls")
    print(f"{'case':56} {'p50 µs':>8} {'p99 µs':>8} {'p50 ratio':>10}")
    for name, (p50, p99) in medians.items():
        base = pipeline if "pipeline" in name else plan
        print(f"{name:56} {p50:8.2f} {p99:8.2f} {p50 / base:9.2f}x")


if __name__ == "__main__":
    main()
