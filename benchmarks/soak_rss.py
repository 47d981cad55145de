"""RSS growth of one gateway worker over many proxied requests (issue 18: ≤ 10 MB per 100k).

    python benchmarks/soak_rss.py [--requests 100000] [--warmup 20000] [--concurrency 32]

One `turnout serve` worker (default logging and metrics on, the JSON request
log to a pipe that is drained) in front of the fake OpenAI upstream, as in
http_gateway.py. After ``--warmup`` requests (pools, caches, lazy imports and
the allocator settle), it reads the worker's RSS, sends ``--requests`` more in
``--steps`` equal batches with `hey -n`, and prints the RSS after each batch:
growth that keeps climbing batch after batch is a leak, a step that stays flat
is not. Needs `hey`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from http_gateway import BODY, POLICY, ROOT, free_port, machine, pin, wait_http


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def send(url: str, body: Path, n: int, concurrency: int, core: int | None) -> int:
    """``n`` requests with hey; the count of non-200 answers."""
    out = subprocess.run(
        [*pin(core), "hey", "-n", str(n), "-c", str(concurrency), "-m", "POST",
         "-T", "application/json", "-D", str(body), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    answers = re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", out, re.MULTILINE)
    failed = (
        re.findall(r"^\s*\[(\d+)\]\s+\S", out.split("Error distribution:")[1], re.MULTILINE)
        if "Error distribution:" in out
        else []
    )
    return sum(int(n) for code, n in answers if code != "200") + sum(int(n) for n in failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("hey") is None:
        print("SKIPPED: the load generator `hey` is not installed (apt-get install -y hey)")
        return 0
    gw_core, load_core = (0, 1) if (os.cpu_count() or 1) >= 2 else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="turnout-soak-"))
    up_port, port = free_port(), free_port()
    policy = tmp / "routes.yaml"
    policy.write_text(POLICY.format(port=up_port, claude_port=free_port()))
    body = tmp / "gateway.json"
    body.write_text(json.dumps(BODY).replace("MODEL", "bench"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    upstream = subprocess.Popen(
        [*pin(load_core), sys.executable, "-m", "tests.fakes.openai_upstream",
         "--port", str(up_port), "--loop", "uvloop"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    gateway = subprocess.Popen(
        [*pin(gw_core), sys.executable, "-m", "turnout.cli", "serve", "--config", str(policy),
         "--port", str(port), "--no-watch", "--log-format", "json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    lines = [0]

    def drain() -> None:  # the request log goes somewhere, as in production
        assert gateway.stdout is not None
        for _ in gateway.stdout:
            lines[0] += 1

    threading.Thread(target=drain, daemon=True).start()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        wait_http(f"http://127.0.0.1:{port}/health")
        errors = send(url, body, args.warmup, args.concurrency, load_core)
        start = rss_kb(gateway.pid)
        print(f"machine: {machine()}")
        print(f"after {args.warmup} warm-up requests: RSS {start / 1024:.1f} MB ({errors} errors)")
        step = args.requests // args.steps
        for i in range(1, args.steps + 1):
            errors = send(url, body, step, args.concurrency, load_core)
            now = rss_kb(gateway.pid)
            print(f"+{i * step:>7} requests: RSS {now / 1024:.1f} MB, "
                  f"growth {(now - start) / 1024:+.1f} MB ({errors} errors)")  # fmt: skip
        print(f"request log lines read: {lines[0]}")
    finally:
        for proc in (gateway, upstream):
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
