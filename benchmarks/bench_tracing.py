"""What the tracing plugin costs one request, off and on, in-process.

    python benchmarks/bench_tracing.py [--rounds 5] [--n 5000]

Every case is ``engine.chat`` on the mock provider (no network), timed per call
with perf_counter_ns; a round reports p50/p99 and the table the median over
rounds, the cases interleaved round by round. ``absent`` is an engine with the
tracing plugin unregistered (the baseline), ``off`` the default (plugin
registered, no ``telemetry:`` and no ``OTEL_*`` endpoint), ``on`` exports every
span over OTLP/HTTP to a collector on loopback that accepts and drops them (the
batch processor's export thread runs during the timing, as in production).
``on, retry+fallback`` is a request with two failed attempts, so three attempt
spans.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout import Engine  # noqa: E402
from turnout.plugins import tracing  # noqa: E402

from tests.fakes.server import LoopbackServer, Reply, Request  # noqa: E402

POLICY = """
{telemetry}
providers:
  mock: {{type: mock}}
  down: {{type: mock, options: {{script: [{{fail: server_error}}], repeat: true}}}}
defaults:
  retry: {{attempts: 2, backoff: 0s}}
routes:
  - {{name: one, match: {{model: one}}, targets: [mock/echo]}}
  - {{name: three, match: {{model: three}}, targets: [down/a], fallbacks: [mock/echo]}}
"""
BODY = [{"role": "user", "content": "Summarise the meeting notes in three bullet points."}]


async def time_calls(engine: Engine, model: str, n: int) -> list[int]:
    body = {"model": model, "messages": BODY}
    for _ in range(200):
        await engine.chat(body)
    out = []
    gc.disable()
    try:
        for _ in range(n):
            t = time.perf_counter_ns()
            await engine.chat(body)
            out.append(time.perf_counter_ns() - t)
    finally:
        gc.enable()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()

    def drop(request: Request) -> Reply:
        return Reply.json(200, {})

    with LoopbackServer(drop) as collector:
        on = f'telemetry: {{traces: true, endpoint: "http://127.0.0.1:{collector.port}"}}'
        absent = Engine.from_yaml(POLICY.format(telemetry=""), autoload=False)
        absent.plugin_manager.unregister(name="turnout.plugins.tracing")
        cases = {
            "absent (baseline)": (absent, "one"),
            "off": (Engine.from_yaml(POLICY.format(telemetry=""), autoload=False), "one"),
            "on": (Engine.from_yaml(POLICY.format(telemetry=on), autoload=False), "one"),
            "absent, retry+fallback": (absent, "three"),
            "on, retry+fallback": (
                Engine.from_yaml(POLICY.format(telemetry=on), autoload=False),
                "three",
            ),
        }
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}

        async def run() -> None:
            for _ in range(args.rounds):
                for name, (engine, model) in cases.items():
                    times = sorted(await time_calls(engine, model, args.n))
                    rows[name].append(
                        (times[len(times) // 2] / 1000, times[len(times) * 99 // 100] / 1000)
                    )
                tracing.force_flush()

        asyncio.run(run())
    print(f"{args.rounds} rounds x {args.n} calls; python {sys.version.split()[0]}")
    print("| case | p50 µs | p99 µs | p50 vs absent |")
    print("|---|---|---|---|")
    medians = {
        k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v))
        for k, v in rows.items()
    }
    for name, (p50, p99) in medians.items():
        base = medians["absent, retry+fallback" if "retry" in name else "absent (baseline)"][0]
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {p50 - base:+.1f} ({p50 / base:.3f}x) |")


if __name__ == "__main__":
    main()
