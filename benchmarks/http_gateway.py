"""HTTP benchmark: the gateway in front of the fake OpenAI upstream vs the upstream alone.

    python benchmarks/http_gateway.py [--duration 10] [--repeats 3] [--rates 200,500]
        [--transports h1,aiohttp,httpx2] [--floor] [--messages] [--embeddings]

Needs `hey` (Debian: `apt-get install -y hey`); exits with a message if it is
missing. On a machine with at least two cores the gateway is pinned to core 0
and the fake upstream plus the load generator to core 1 (`taskset`), so the
gateway's core does nothing else.

For each fixed request rate, and at saturation, it measures latency
percentiles from hey's per-request CSV, calling the upstream directly and
through one gateway worker (`turnout serve`, default logging and metrics on),
and reports the medians over the repeats: added latency p50/p99 = gateway minus
direct, the maximum throughput of one worker, and the gateway's CPU time per
request (from /proc, so it does not depend on the latency noise of a shared
machine). Targets from issue 3: added p50 ≤ 0.5 ms and p99 ≤ 2 ms at 500 req/s.

`--transports` runs one gateway per upstream transport under the pooled
clients (`TURNOUT_UPSTREAM_TRANSPORT`; default: h1, turnout's own client). `--floor` adds the
least any Python gateway on this stack can cost: a raw ASGI app on the same
uvicorn set-up (the gateway's protocol included) that forwards the body to the
upstream with aiohttp and returns its answer, no parsing, no engine
(`--serve-floor PORT URL` runs it alone).
Repeats are interleaved across targets, so a noisy minute hits all of them.
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
PACERS = 4
BODY = {"model": "MODEL", "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}

POLICY = """\
version: 1
providers:
  fake: {{type: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: bench}}
  claude: {{type: anthropic, base_url: "http://127.0.0.1:{claude_port}", api_key: bench-key}}
routes:
  - name: bench
    match: {{model: bench}}
    targets: [fake/gpt-4o-mini]
  - name: bench-claude
    match: {{model: bench-claude}}
    targets: [claude/claude-haiku-4-5]
  - name: bench-embed
    match: {{model: bench-embed}}
    targets: [fake/text-embedding-3-small]
"""
EMBEDDINGS = {"model": "MODEL", "input": "Say hello to the benchmark", "dimensions": 256,
              "encoding_format": "base64"}  # the openai SDK's default encoding  # fmt: skip
MESSAGES = {"model": "MODEL", "max_tokens": 256,
            "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}  # fmt: skip


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


# request headers by target name prefix: the Anthropic fake wants its key and version
HEADERS: dict[str, list[str]] = {}


def _hey_cmd(body: Path, duration: float, concurrency: int, core: int | None) -> list[str]:
    extra = [arg for name, values in HEADERS.items() if name in str(body)
             for value in values for arg in ("-H", value)]  # fmt: skip
    return [*pin(core), "hey", "-z", f"{duration}s", "-c", str(concurrency), "-m", "POST",
            "-T", "application/json", "-D", str(body), "-o", "csv", *extra]  # fmt: skip


def hey(url: str, body: Path, duration: float, rate: int | None, core: int | None,
        pacing: str = "staggered") -> dict:  # fmt: skip
    """One load run; latencies in ms from hey's CSV output.

    A fixed rate is sent by ``PACERS`` hey processes of one worker each, started
    1/rate apart: hey's workers tick in step, so one hey with N workers sends
    bursts of N simultaneous requests, and the queueing that causes is the
    load tool's, not the server's. ``pacing="hey"`` uses one hey with 2 workers
    (the earlier method, for comparison with older results).
    """
    if rate is None:
        runs = [subprocess.Popen([*_hey_cmd(body, duration, 64, core), url],
                                 stdout=subprocess.PIPE, text=True)]  # fmt: skip
    elif pacing == "hey":
        cmd = [*_hey_cmd(body, duration, 2, core), "-q", str(rate / 2), url]
        runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)]
    else:
        runs = []
        for _ in range(PACERS):
            cmd = [*_hey_cmd(body, duration, 1, core), "-q", str(rate / PACERS), url]
            runs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
            time.sleep(1 / rate)
    rows = []
    for run in runs:
        out = run.communicate()[0]
        if run.returncode:
            raise RuntimeError(f"hey failed: {out[:500]}")
        rows += list(csv.DictReader(io.StringIO(out)))
    ok = [r for r in rows if r["status-code"] == "200"]
    lat = sorted(float(r["response-time"]) * 1000 for r in ok)
    if not lat:
        raise RuntimeError(f"no successful request: {rows[:5]}")
    span = max(float(r["offset"]) for r in rows) or duration
    return {
        "count": len(rows),
        "rps": len(ok) / span,
        "errors": len(rows) - len(ok),
        "p50": lat[len(lat) // 2],
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_floor(port: int, upstream: str) -> None:
    """The floor: forward the request body with aiohttp, answer with the upstream's."""
    import aiohttp
    import uvicorn

    session: aiohttp.ClientSession | None = None
    headers = {"content-type": "application/json"}

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        nonlocal session
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        session = session or aiohttp.ClientSession()
        async with session.post(upstream, data=body, headers=headers) as response:
            payload = await response.read()
            status = response.status
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})

    from turnout.http.protocol import CoalescingHttpToolsProtocol

    # the gateway's own server set-up (one write per response), so the floor stays a floor
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http=CoalescingHttpToolsProtocol,
                access_log=False, log_level="warning")  # fmt: skip


# Where a sample's CPU time goes: the deepest frame that matches names it.
PROFILE_CATEGORIES = [
    ("price calculation (genai-prices via engine/catalog.py)",
     ("genai_prices/", "engine/catalog.py")),
    ("request log (plugins/logging.py, structlog, logging, write)",
     ("plugins/logging.py", "structlog/", "/logging/__init__.py", "engine/http/logs.py",
      "engine/lines.py")),
    ("metrics (prometheus-client)",
     ("prometheus_client/", "plugins/metrics.py", "engine/metrics.py")),
    ("upstream transport (our h1, aiohttp, or httpcore2 + anyio)",
     ("upstream/h1.py", "upstream/h1_pool.py", "upstream/h1_upstream.py", "/httptools/",
      "/aiohttp/", "upstream/transport.py", "httpcore2/", "/anyio/", "/h11/", "multidict/",
      "yarl/")),
    ("httpx2 client layer (request/response objects)", ("httpx2/", "engine/clients.py")),
    ("pydantic (validate request/response, serialise)", ("pydantic/", "pydantic_core")),
    ("openai provider", ("plugins/providers/",)),
    ("engine (executor, planner, hooks, ...)", ("engine/",)),
    ("uvicorn + httptools", ("uvicorn/", "httptools")),
]  # fmt: skip


def categorise(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        if "engine/http/server.py" in frame or "runners.py" in frame:
            return "event loop (uvloop), incl. polling"
        if "engine/http/" in frame and "logs.py" not in frame:
            return "gateway app (engine/http)"
        for name, patterns in PROFILE_CATEGORIES:
            if any(p in frame for p in patterns):
                return name
    return "other"


def profile(pid: int, url: str, body: Path, rate: int, seconds: float, core: int | None,
            tmp: Path) -> None:  # fmt: skip
    """Sample ``pid`` with py-spy under a fixed load; print CPU shares and µs/request."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = tmp / f"profile-{pid}.txt"
    load = subprocess.Popen(
        [*pin(core), "hey", "-z", f"{seconds + 3:g}s", "-c", "2", "-q", str(rate / 2), "-m", "POST",
         "-T", "application/json", "-D", str(body), url], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    cpu = cpu_seconds(pid)
    started = time.monotonic()
    subprocess.run([spy, "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", "500", "-f", "raw",
                    "-o", str(raw), "--nonblocking"], check=True, capture_output=True)  # fmt: skip
    cpu_share = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
    summary = load.communicate()[0]
    served = next(
        (float(line.split()[-1]) for line in summary.splitlines() if "Requests/sec" in line),
        float(rate),
    )
    shares: dict[str, int] = {}
    leaves: dict[str, int] = {}  # self time: the innermost frame of each sample
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        key = categorise(stack)
        shares[key] = shares.get(key, 0) + int(count)
        leaf = stack.rsplit(";", 1)[-1]
        leaves[leaf] = leaves.get(leaf, 0) + int(count)
    # Shares of the samples, scaled to the CPU time /proc reports. The event-loop
    # bucket (uvloop's C code) also catches some polling, so read it as an upper bound.
    total = sum(shares.values())
    per_request = cpu_share * 1e6 / served
    print(f"   load: {served:.0f} req/s; gateway CPU: {cpu_share:.0%} of a core "
          f"= {per_request:.0f} µs/request")  # fmt: skip
    for key, count in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"   {count / total:6.1%} {count / total * per_request:6.0f} µs  {key}")
    print("   top self time (innermost frame):")
    for leaf, count in sorted(leaves.items(), key=lambda item: -item[1])[:25]:
        print(f"   {count / total:6.1%} {count / total * per_request:6.1f} µs  {leaf[:110]}")


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
    parser.add_argument(
        "--transports",
        default="h1",
        help="upstream transports to run a gateway with, comma-separated",
    )
    parser.add_argument(
        "--pacing",
        choices=("staggered", "hey"),
        default="staggered",
        help="fixed rates: staggered single-worker hey processes (default), or one hey "
        "with 2 workers that send in bursts of two (the method of older results)",
    )
    parser.add_argument("--floor", action="store_true", help="also measure the minimal proxy")
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="also measure /v1/embeddings (one input, 256 dimensions, base64) through the "
        "gateway against the fake OpenAI upstream's own /v1/embeddings",
    )
    parser.add_argument(
        "--messages",
        action="store_true",
        help="also measure /v1/messages: translated to the fake OpenAI upstream, and "
        "native to the fake Anthropic upstream (next to that upstream called directly)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run a gateway from another checkout (e.g. a git worktree "
        "of an older commit), as target 'baseline'",
    )
    parser.add_argument(
        "--profile",
        type=float,
        metavar="SECONDS",
        help="instead of the latency runs: sample each gateway with py-spy for "
        "SECONDS at the last --rates rate and print where its CPU goes",
    )
    parser.add_argument("--serve-floor", nargs=2, metavar=("PORT", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()  # fmt: skip
    if args.serve_floor:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return 0
    if shutil.which("hey") is None:
        print("SKIPPED: the load generator `hey` is not installed (apt-get install -y hey)")
        return 0
    two_cores = (os.cpu_count() or 1) >= 2
    gw_core, load_core = (0, 1) if two_cores else (None, None)
    rates = [int(r) for r in args.rates.split(",") if r]
    transports = [t for t in args.transports.split(",") if t]

    up_port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
    policy = tmp / "routes.yaml"
    claude_port = free_port()
    policy.write_text(POLICY.format(port=up_port, claude_port=claude_port))
    bodies = {}
    for name, model in (("direct", "gpt-4o-mini"), ("gateway", "bench")):
        bodies[name] = tmp / f"{name}.json"
        bodies[name].write_text(json.dumps(BODY).replace("MODEL", model))
    for name, model in (("msg-xlate", "bench"), ("msg-native", "bench-claude"),
                        ("claude-direct", "claude-haiku-4-5")):  # fmt: skip
        bodies[name] = tmp / f"{name}.json"
        bodies[name].write_text(json.dumps(MESSAGES).replace("MODEL", model))
    for name, model in (("emb-direct", "text-embedding-3-small"), ("emb-gateway", "bench-embed")):
        bodies[name] = tmp / f"{name}.json"
        bodies[name].write_text(json.dumps(EMBEDDINGS).replace("MODEL", model))
    HEADERS["claude-direct"] = ["x-api-key: bench-key", "anthropic-version: 2023-06-01"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    python = sys.executable
    upstream_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
    procs = [
        subprocess.Popen(
            [*pin(load_core), python, "-m", "tests.fakes.openai_upstream",
             "--port", str(up_port), "--loop", "uvloop"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    # target name -> (url, request body, server process or None)
    targets: dict[str, tuple[str, Path, subprocess.Popen[bytes] | None]] = {
        "direct": (upstream_url, bodies["direct"], None)
    }
    gateways = [("gateway" if len(transports) == 1 else f"gw/{t}", ROOT, t) for t in transports]
    if args.baseline:
        gateways.insert(0, ("baseline", Path(args.baseline).resolve(), transports[0]))
    for name, root, transport in gateways:
        port = free_port()
        proc = subprocess.Popen(
            [*pin(gw_core), python, "-m", "turnout.cli", "serve", "--config", str(policy),
             "--port", str(port), "--no-watch", "--log-format", "json"],
            cwd=root, stdout=subprocess.DEVNULL,
            env={**env, "PYTHONPATH": str(root), "TURNOUT_UPSTREAM_TRANSPORT": transport},
        )  # fmt: skip
        procs.append(proc)
        targets[name] = (f"http://127.0.0.1:{port}/v1/chat/completions", bodies["gateway"], proc)
    if args.messages:
        procs.append(subprocess.Popen(
            [*pin(load_core), python, "-m", "tests.fakes.anthropic_upstream",
             "--port", str(claude_port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        claude_url = f"http://127.0.0.1:{claude_port}/v1/messages"
        targets["claude-direct"] = (claude_url, bodies["claude-direct"], None)
        gateway_url, _, gateway_proc = targets[gateways[-1][0]]
        messages_url = gateway_url.replace("/chat/completions", "/messages")
        targets["msg-xlate"] = (messages_url, bodies["msg-xlate"], gateway_proc)
        targets["msg-native"] = (messages_url, bodies["msg-native"], gateway_proc)
    if args.embeddings:
        gateway_url, _, gateway_proc = targets[gateways[-1][0]]
        targets["emb-direct"] = (upstream_url.replace("/chat/completions", "/embeddings"),
                                 bodies["emb-direct"], None)  # fmt: skip
        targets["emb-gateway"] = (gateway_url.replace("/chat/completions", "/embeddings"),
                                  bodies["emb-gateway"], gateway_proc)  # fmt: skip
    if args.floor:
        port = free_port()
        proc = subprocess.Popen(
            [*pin(gw_core), python, str(Path(__file__).resolve()),
             "--serve-floor", str(port), upstream_url],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        targets["floor"] = (f"http://127.0.0.1:{port}/", bodies["direct"], proc)

    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        for url, body, _ in targets.values():  # up, then warm connections and code paths
            wait_http(url.rsplit("/v1/", 1)[0] + "/health")  # any HTTP answer: it is up
            hey(url, body, 2, None, load_core)
        if args.profile:
            for name, (url, body, proc) in targets.items():
                if name not in ("direct", "floor") and proc is not None:
                    print(f"-- {name}, {rates[-1]} req/s, {args.profile:g}s of py-spy samples")
                    profile(proc.pid, url, body, rates[-1], args.profile, load_core, tmp)
            return 0
        for rate in [*rates, None]:
            label = f"{rate} req/s" if rate else "max"
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for _ in range(args.repeats):
                for name, (url, body, proc) in targets.items():
                    before = cpu_seconds(proc.pid) if proc else 0.0
                    run = hey(url, body, args.duration, rate, load_core, args.pacing)
                    if proc:
                        run["cpu_us"] = (cpu_seconds(proc.pid) - before) * 1e6 / run["count"]
                    runs[name].append(run)
            results[label] = {
                name: {key: statistics.median(run[key] for run in rs) for key in rs[0]}
                for name, rs in runs.items()
            }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine()}; pinned: {'yes' if two_cores else 'no'}; "
          f"{args.repeats} x {args.duration:g}s per cell, medians")  # fmt: skip
    print(f"{'load':>12} {'target':>12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7} {'CPU µs/req':>11}")  # fmt: skip
    for label, by_target in results.items():
        d = by_target["direct"]
        for name, r in by_target.items():
            cpu = f"{r['cpu_us']:11.0f}" if "cpu_us" in r else ""
            print(f"{label:>12} {name:>12} {r['rps']:8.0f} {r['p50']:8.3f} {r['p99']:8.3f} "
                  f"{r['errors']:7.0f} {cpu}")  # fmt: skip
        for name, r in by_target.items():
            if name not in ("direct", "claude-direct", "emb-direct"):
                base = {"msg-native": "claude-direct", "emb-gateway": "emb-direct"}
                d = by_target[base.get(name, "direct")]
                print(f"{label:>12} {'+' + name:>12} {'':>8} {r['p50'] - d['p50']:8.3f} "
                      f"{r['p99'] - d['p99']:8.3f}   added; "
                      f"throughput ratio {r['rps'] / d['rps']:.2f}")  # fmt: skip
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
