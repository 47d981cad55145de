"""What the default observers (metrics, request log) cost per request, old and new.

    taskset -c 0 python benchmarks/bench_observers.py [--rounds 7] [--n 3000] [--base main]

Every case is ``engine.chat`` on the mock provider (no network) with one set
of ``turnout_request_finished`` observers registered: none, the metrics
plugin, the request log, or both. "old" is the plugins as git revision
``--base`` has them (``plugins/metrics.py``, ``plugins/logging.py`` and the
``engine/http/logs.py`` that configures their output, loaded from
``git show`` into temporary modules), "new" the working tree's. The request
log is configured as ``turnout serve --log-format json`` does and written to
a temporary file standing in for stdout (``--sink pipe``: a pipe that ``cat``
reads, as a container's log collector reads stdout). A case is timed as process CPU time
over ``--n`` calls (so the log's flush timer counts); each round runs every
case once, interleaved, and the table shows the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402
from turnout import Engine  # noqa: E402
from turnout.http import logs as new_logs  # noqa: E402
from turnout.lines import use_json_lines  # noqa: E402
from turnout.plugin_api import hookimpl  # noqa: E402
from turnout.plugins import logging as new_logging  # noqa: E402
from turnout.plugins import metrics as new_metrics  # noqa: E402

POLICY = """
providers:
  mock: {type: mock}
routes:
  - {name: chat, match: {model: chat}, targets: [mock/echo]}
"""
BODY = {
    "model": "chat",
    "messages": [{"role": "user", "content": "Summarise the meeting notes in three bullets."}],
}
METRICS = "turnout.plugins.metrics.requests"
LOG = "turnout.plugins.logging"


def from_git(base: str, path: str, name: str) -> ModuleType:
    """Module ``path`` as revision ``base`` has it, imported as ``name``."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{base}:{path}"], check=True, capture_output=True
    ).stdout
    with tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module


def engine_with(metrics: Any | None, log: ModuleType | None) -> Engine:
    """An engine whose only request observers are ``metrics`` and ``log``."""
    engine = Engine.from_yaml(POLICY, autoload=False, env={})
    pm = engine.plugin_manager
    pm.unregister(name=METRICS)
    pm.unregister(name=LOG)
    if metrics is not None:
        pm.register(metrics.RequestMetrics(CollectorRegistry()), name="bench.metrics")
    if log is not None:
        pm.register(log, name="bench.log")
    return engine


class Capture:
    """Keeps the last finished request's context and outcome."""

    seen: tuple[Any, Any] | None = None

    @hookimpl
    def turnout_request_finished(self, ctx: Any, outcome: Any) -> None:
        self.seen = (ctx, outcome)


async def finished_request() -> tuple[Any, Any]:
    """A real request's ``(ctx, outcome)``, as the observers receive them."""
    engine = engine_with(None, None)
    capture = Capture()
    engine.plugin_manager.register(capture, name="bench.capture")
    await engine.chat(BODY)
    assert capture.seen is not None
    return capture.seen


async def hook_cpu(observers: list[Any], ctx: Any, outcome: Any, n: int) -> float:
    """CPU µs of calling ``observers`` for one finished request, the log's
    buffered lines written out inside the timing (the loop turns over every 64
    calls, so its flush timer fires as it would between requests)."""
    gc.collect()
    t0 = time.process_time_ns()
    for i in range(n):
        for observe in observers:
            observe(ctx, outcome)
        if i % 64 == 0:
            await asyncio.sleep(0)  # the loop turns over, as it does between requests
    for handler in logging.getLogger().handlers:
        handler.flush()
    return (time.process_time_ns() - t0) / n / 1000


async def cpu_per_call(engine: Engine, n: int) -> float:
    gc.collect()
    t0 = time.process_time_ns()
    for _ in range(n):
        await engine.chat(BODY)
    return (time.process_time_ns() - t0) / n / 1000


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--base", default="main", help="git revision of the old plugins")
    parser.add_argument(
        "--sink",
        choices=["file", "pipe"],
        default="file",
        help="where stdout goes: a temporary file, or a pipe read by `cat`",
    )
    args = parser.parse_args()

    old_metrics = from_git(args.base, "plugins/metrics.py", "old_metrics")
    old_logging = from_git(args.base, "plugins/logging.py", "old_logging")
    old_logs = from_git(args.base, "engine/http/logs.py", "old_logs")
    stdout = sys.stdout
    reader = None
    if args.sink == "pipe":  # stdout as a container runtime's log reader sees it
        reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert reader.stdin is not None
        sink: Any = io.TextIOWrapper(reader.stdin)
    else:
        sink = open(tempfile.mktemp(suffix=".log"), "w")  # noqa: SIM115 - closed below

    def old_output() -> None:
        sys.stdout = sink
        old_logs.configure_logging("json")
        use_json_lines(None)

    def new_output() -> None:
        sys.stdout = sink
        new_logs.configure_logging("json")

    versions = {
        "old": (old_metrics, old_logging, old_output),
        "new": (new_metrics, new_logging, new_output),
    }
    cases: dict[str, dict[str, tuple[Engine, Any]]] = {}
    for version, (metrics, log, output) in versions.items():
        cases[version] = {
            "no observers": (engine_with(None, None), output),
            "metrics": (engine_with(metrics, None), output),
            "request log": (engine_with(None, log), output),
            "metrics + request log": (engine_with(metrics, log), output),
        }

    async def run() -> dict[tuple[str, str], float]:
        samples: dict[tuple[str, str], list[float]] = {}
        ctx, outcome = await finished_request()
        hooks: dict[str, dict[str, list[Any]]] = {}
        for version, (metrics, log, _) in versions.items():
            observe = metrics.RequestMetrics(CollectorRegistry()).turnout_request_finished
            hooks[version] = {
                "hook: metrics": [observe],
                "hook: request log": [log.turnout_request_finished],
                "hook: both": [observe, log.turnout_request_finished],
            }
        for _ in range(args.rounds):
            for version, (_, _, output) in versions.items():
                output()
                for name, observers in hooks[version].items():
                    samples.setdefault((version, name), []).append(
                        await hook_cpu(observers, ctx, outcome, args.n)
                    )
        for version in cases:
            for engine, output in cases[version].values():
                output()
                await cpu_per_call(engine, 500)  # warm
        for _ in range(args.rounds):
            for version in cases:
                for name, (engine, output) in cases[version].items():
                    output()
                    samples.setdefault((version, name), []).append(
                        await cpu_per_call(engine, args.n)
                    )
        return {key: statistics.median(values) for key, values in samples.items()}

    medians = asyncio.run(run())
    sys.stdout = stdout
    new_logs.configure_logging("console")
    if reader is None:
        written = os.path.getsize(sink.name)
        sink.close()
        os.unlink(sink.name)
    else:
        written = 0
        sink.close()
        reader.wait()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}; load average {load_average()}; "
        f"{args.rounds} rounds x {args.n} calls; old = {args.base}; "
        f"log to a {args.sink}" + (f": {written / 1e6:.1f} MB" if written else "")
    )
    print(f"{'case (CPU µs/request)':26} {'old':>8} {'new':>8} {'new/old':>8} "
          f"{'old cost':>9} {'new cost':>9} {'cost new/old':>13}")  # fmt: skip
    for name in ("hook: metrics", "hook: request log", "hook: both"):
        old, new = medians[("old", name)], medians[("new", name)]
        print(f"{name:26} {old:8.1f} {new:8.1f} {new / old:8.2f}")
    base_old = medians[("old", "no observers")]
    base_new = medians[("new", "no observers")]
    for name in cases["old"]:
        old, new = medians[("old", name)], medians[("new", name)]
        cost_old, cost_new = old - base_old, new - base_new
        ratio = f"{cost_new / cost_old:.2f}" if cost_old > 0.5 else "-"
        print(f"{name:26} {old:8.1f} {new:8.1f} {new / old:8.2f} "
              f"{cost_old:9.1f} {cost_new:9.1f} {ratio:>13}")  # fmt: skip


if __name__ == "__main__":
    main()
