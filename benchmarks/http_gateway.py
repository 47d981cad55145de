"""HTTP benchmark: the gateway in front of the fake OpenAI upstream vs the upstream alone.

    python benchmarks/http_gateway.py [--duration 10] [--repeats 3] [--rates 200,500]

Needs `hey` (Debian: `apt-get install -y hey`); exits with a message if it is
missing. On a machine with at least two cores the gateway is pinned to core 0
and the fake upstream plus the load generator to core 1 (`taskset`), so the
gateway's core does nothing else.

For each fixed request rate, and at saturation, it measures latency
percentiles from hey's per-request CSV, calling the upstream directly and
through one gateway worker (`turnout serve`, default logging and metrics on),
and reports the medians over the repeats: added latency p50/p99 = gateway minus
direct, and the maximum throughput of one worker. Targets from issue 3:
added p50 ≤ 0.5 ms and p99 ≤ 2 ms at 500 req/s.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "MODEL", "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}

POLICY = """\
version: 1
providers:
  fake: {{type: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: bench}}
routes:
  - name: bench
    match: {{model: bench}}
    targets: [fake/gpt-4o-mini]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


def wait_http(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: it is up
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from exc
            time.sleep(0.1)


def hey(url: str, body: Path, duration: float, rate: int | None, core: int | None) -> dict:
    """One hey run; latencies in ms from its CSV output."""
    # Fixed rates use 2 workers: hey's workers tick in step, so N workers send
    # bursts of N requests, and the queueing that causes is the load tool's.
    concurrency = 2 if rate else 64
    cmd = [*pin(core), "hey", "-z", f"{duration}s", "-c", str(concurrency), "-m", "POST",
           "-T", "application/json", "-D", str(body), "-o", "csv"]  # fmt: skip
    if rate:
        cmd += ["-q", str(rate / concurrency)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = [r for r in rows if r["status-code"] == "200"]
    lat = sorted(float(r["response-time"]) * 1000 for r in ok)
    if not lat:
        raise RuntimeError(f"no successful request: {out[:500]}")
    span = max(float(r["offset"]) for r in rows) or duration
    return {
        "rps": len(ok) / span,
        "errors": len(rows) - len(ok),
        "p50": lat[len(lat) // 2],
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", default="200,500")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        print("SKIPPED: the load generator `hey` is not installed (apt-get install -y hey)")
        return 0
    two_cores = (os.cpu_count() or 1) >= 2
    gw_core, load_core = (0, 1) if two_cores else (None, None)
    rates = [int(r) for r in args.rates.split(",") if r]

    up_port, gw_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
    policy = tmp / "routes.yaml"
    policy.write_text(POLICY.format(port=up_port))
    bodies = {}
    for name, model in (("direct", "gpt-4o-mini"), ("gateway", "bench")):
        bodies[name] = tmp / f"{name}.json"
        bodies[name].write_text(json.dumps(BODY).replace("MODEL", model))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    python = sys.executable
    procs = [
        subprocess.Popen(
            [*pin(load_core), python, "-m", "tests.fakes.openai_upstream",
             "--port", str(up_port), "--loop", "uvloop"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*pin(gw_core), python, "-m", "engine.cli", "serve", "--config", str(policy),
             "--port", str(gw_port), "--no-watch", "--log-format", "json"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    urls = {
        "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
        "gateway": f"http://127.0.0.1:{gw_port}/v1/chat/completions",
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        for name, url in urls.items():  # warm up connections and code paths
            hey(url, bodies[name], 2, None, load_core)
        for rate in [*rates, None]:
            label = f"{rate} req/s" if rate else "max"
            for name, url in urls.items():
                runs = [hey(url, bodies[name], args.duration, rate, load_core)
                        for _ in range(args.repeats)]  # fmt: skip
                results.setdefault(label, {})[name] = {
                    key: statistics.median(run[key] for run in runs) for key in runs[0]
                }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine()}; pinned: {'yes' if two_cores else 'no'}; "
          f"{args.repeats} x {args.duration:g}s per cell, medians")  # fmt: skip
    print(f"{'load':>12} {'target':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, by_target in results.items():
        for name, r in by_target.items():
            print(f"{label:>12} {name:>8} {r['rps']:8.0f} {r['p50']:8.3f} {r['p99']:8.3f} "
                  f"{r['errors']:7.0f}")  # fmt: skip
        d, g = by_target["direct"], by_target["gateway"]
        ratio = g["rps"] / d["rps"]
        print(f"{label:>12} {'added':>8} {'':>8} {g['p50'] - d['p50']:8.3f} "
              f"{g['p99'] - d['p99']:8.3f}   throughput ratio {ratio:.2f}")  # fmt: skip
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
