"""What the cache and guardrail plugins add to one request, in-process.

    python benchmarks/bench_hooks.py [--rounds 5] [--n 5000] [--redis redis://...]

Every case is ``engine.chat`` on the mock provider (no network), timed per call
with perf_counter_ns; a round reports p50/p99 and the table the median over
rounds. ``baseline`` is a route with neither cache nor guardrails; each
guardrail case is a route with that guardrail alone (on input and output), so
its cost is its row minus the baseline. A cache hit is the whole request
answered from the cache (no provider call), so compare it with the baseline
miss path. Without ``--redis`` a redis-server is started on a free port if the
binary is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout import Engine  # noqa: E402

PROMPT = (
    "Summarise the attached meeting notes in three bullet points. The team agreed to move "
    "the launch to the second week of March, pending the security review, and asked the "
    "platform group for two more engineers until the migration is complete."
)
PII_PROMPT = PROMPT + " Contact jane.doe@example.com or card 4242 4242 4242 4242."
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "r",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    },
}

POLICY = """
providers:
  mock: {{type: mock}}
  json: {{type: mock, options: {{reply: '{{"name": "x", "age": 3}}'}}}}
routes:
  - {{name: baseline, match: {{model: baseline}}, targets: [mock/echo]}}
  - {{name: cache_memory, match: {{model: cache_memory}}, targets: [mock/echo], cache: {{ttl: 1h}}}}
  - name: cache_redis
    match: {{model: cache_redis}}
    targets: [mock/echo]
    cache: {{ttl: 1h, backend: redis, url: "{redis}", timeout: 1s}}
  - {{name: pii, match: {{model: pii}}, targets: [mock/echo], guardrails: [pii]}}
  - {{name: secrets, match: {{model: secrets}}, targets: [mock/echo], guardrails: [secrets]}}
  - name: deny
    match: {{model: deny}}
    targets: [mock/echo]
    guardrails:
      - {{type: deny, keywords: [project zeus, codename], patterns: ["(?i)internal[- ]only"]}}
  - name: limits
    match: {{model: limits}}
    targets: [mock/echo]
    guardrails: [{{type: limits, max_prompt_tokens: 4000, max_messages: 20}}]
  - name: json_schema
    match: {{model: json_schema}}
    targets: [json/a]
    guardrails: [json_schema]
  - {{name: all, match: {{model: all}}, targets: [mock/echo], guardrails: [pii, secrets]}}
"""


def body(model: str, text: str = PROMPT, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


CASES: list[tuple[str, dict[str, object]]] = [
    ("baseline (no cache, no guardrails)", body("baseline")),
    ("cache: memory hit", body("cache_memory", temperature=0)),
    ("cache: redis hit (loopback)", body("cache_redis", temperature=0)),
    ("guardrail pii (nothing found)", body("pii")),
    ("guardrail pii (email + card redacted)", body("pii", PII_PROMPT)),
    ("guardrail secrets (nothing found)", body("secrets")),
    ("guardrail deny", body("deny")),
    ("guardrail limits", body("limits")),
    ("guardrail json_schema (valid output)", body("json_schema", response_format=SCHEMA)),
    ("guardrails pii + secrets", body("all")),
]


async def time_async(fn: Callable[[], Awaitable[object]], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append(clock() - t0)
    return out


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


async def run(engine: Engine, rounds: int, n: int, redis: bool) -> dict[str, list[float]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in CASES}
    for name, request in CASES:
        if "redis" in name and not redis:
            continue
        await engine.chat(request)  # warm: a cache case stores its entry here
    for _ in range(rounds):
        for name, request in CASES:
            if "redis" in name and not redis:
                continue
            gc.collect()
            samples = await time_async(lambda r=request: engine.chat(r), n)
            results[name].append((percentile(samples, 0.5), percentile(samples, 0.99)))
    return {
        k: [statistics.median(p for p, _ in v), statistics.median(q for _, q in v)]
        for k, v in results.items()
        if v
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--redis", help="a Redis URL (default: start redis-server if installed)")
    args = parser.parse_args()

    import contextlib

    with contextlib.ExitStack() as stack:
        url = args.redis
        if url is None:
            import shutil

            if shutil.which("redis-server"):
                from tests.redis_server import redis_server

                url = stack.enter_context(redis_server())
        engine = Engine.from_yaml(
            POLICY.format(redis=url or "redis://127.0.0.1:1/0"), autoload=False, env={}
        )
        medians = asyncio.run(run(engine, args.rounds, args.n, url is not None))
    base = medians["baseline (no cache, no guardrails)"][0]
    print(f"{args.rounds} rounds x {args.n} calls; python {sys.version.split()[0]}")
    print("| case | p50 µs | p99 µs | p50 vs baseline |")
    print("|---|---|---|---|")
    for name, (p50, p99) in medians.items():
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {p50 - base:+.1f} |")


if __name__ == "__main__":
    main()
