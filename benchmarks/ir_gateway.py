"""Instructions per proxied request, counted by callgrind: an A/B that noise cannot move.

    python benchmarks/ir_gateway.py [--baseline DIR] [--requests 3000] [--warmup 500]

On a shared 2-core machine the gateway's CPU µs per request moves by ±15 %
from one minute to the next, more than most single changes are worth. This
runs ``turnout serve`` (one worker, the default plugins: metrics and the JSON
request log) under ``valgrind --tool=callgrind`` against the fake OpenAI
upstream, loads it with ``hey -c 32`` (so 32 requests are in flight, as at
saturation), zeroes the counters after a warm-up and reports the instructions
the process executed per request. Instructions do not move with the machine's
load, but the cyclic garbage collector's full collections do move the count: a
rare, large event (≈130M instructions over a heap that was not frozen) lands in
one window and not the next, so what the collector costs is timed with
gc.callbacks over many requests instead. The count does not see cache misses or
syscall time: it ranks Python-side changes, and the timed benchmarks
(http_gateway.py) say what they are worth in µs. ``--baseline DIR``: also count
a checkout of another commit (``git worktree add DIR <commit>``) in the same
run. Needs valgrind and hey; the gateway runs ≈50x slower under callgrind
(≈1 minute a target).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_gateway import BODY, free_port, pin, wait_http  # noqa: E402

POLICY = """\
version: 1
providers:
  fake: {{type: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: bench}}
routes:
  - name: bench
    match: {{model: bench}}
    targets: [fake/gpt-4o-mini]
"""


def hey(url: str, body: Path, n: int) -> str:
    cmd = [*pin(1), "hey", "-n", str(n), "-c", "32", "-t", "60", "-m", "POST",
           "-T", "application/json", "-D", str(body), url]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def count(root: Path, policy: Path, body: Path, requests: int, warmup: int, tmp: Path) -> int:
    """Instructions per request of the gateway checked out at ``root``."""
    port = free_port()
    out = tmp / f"callgrind.{port}"
    env = {**os.environ, "PYTHONPATH": str(root), "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    gateway = subprocess.Popen(
        [*pin(0), "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, "-m", "turnout.cli", "serve", "--config", str(policy),
         "--port", str(port), "--no-watch", "--log-format", "json"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        hey(url, body, warmup)
        subprocess.run(["callgrind_control", "-z", str(gateway.pid)], check=True,
                       capture_output=True)  # fmt: skip
        report = hey(url, body, requests)
        subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True,
                       capture_output=True)  # fmt: skip
        served = re.search(r"\[200\]\s+(\d+) responses", report)
        if served is None or int(served.group(1)) < requests * 0.95:
            raise SystemExit(f"{root}: too few 200s under callgrind:\n{report}")
        dumps = sorted(tmp.glob(f"callgrind.{port}*"), key=lambda p: p.stat().st_mtime)
        totals = re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(), re.M)
        assert totals is not None, "callgrind wrote no totals"
        return int(totals.group(1)) // int(served.group(1))
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="DIR", help="also count this checkout")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    missing = [tool for tool in ("valgrind", "callgrind_control", "hey") if not shutil.which(tool)]
    if missing:
        print(f"SKIPPED: not installed: {', '.join(missing)} (apt-get install -y valgrind hey)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="turnout-ir-"))
    up_port = free_port()
    policy = tmp / "routes.yaml"
    policy.write_text(POLICY.format(port=up_port))
    body = tmp / "body.json"
    body.write_text(json.dumps({**BODY, "model": "bench"}))
    upstream = subprocess.Popen(
        [*pin(1), sys.executable, "-m", "tests.fakes.openai_upstream",
         "--port", str(up_port), "--loop", "uvloop"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        targets = [("gateway", ROOT)]
        if args.baseline:
            targets.insert(0, ("baseline", Path(args.baseline).resolve()))
        counts = {}
        for name, root in targets:
            counts[name] = count(root, policy, body, args.requests, args.warmup, tmp)
            print(f"{name:>9}: {counts[name]:>10,} instructions per request", flush=True)
        if "baseline" in counts:
            print(f"    ratio: {counts['gateway'] / counts['baseline']:.3f} (gateway / baseline)")
    finally:
        upstream.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
