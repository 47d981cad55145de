"""turnout side by side with LiteLLM proxy and Portkey gateway, on the same upstream.

    python benchmarks/peers.py                      # full run, ~40 minutes
    python benchmarks/peers.py --quick              # smoke run, ~6 minutes
    python benchmarks/peers.py --raw benchmarks/raw/peers-$(date +%F).txt

Run it with the interpreter of turnout's development environment (it needs
aiohttp and uvloop, and runs turnout, the floor and the load generator with
the same interpreter). Needs `hey` and `taskset`; node/npm for Portkey.

What it does, in one process:

1. Installs the peers at pinned versions into throwaway environments under
   `~/.cache/turnout-bench` (or `$TURNOUT_BENCH_CACHE`), never into the
   project: LiteLLM proxy from PyPI (`litellm[proxy]`) into its own venv, the
   Portkey gateway from npm (`@portkey-ai/gateway`, install scripts off) into
   its own folder. A peer that cannot be installed is reported as such in the
   table, with the error.
2. Takes turnout from a commit (`--turnout-ref`, default HEAD) exported with
   `git archive`, so edits in progress in the work tree are not measured.
3. Starts one fake OpenAI upstream per upstream latency (default 0 ms and
   50 ms) on core 1, each replying with `--reply-words` words.
4. For each round and each target in turn — the upstream directly (the
   baseline), the floor (`peers/floor.py`: raw ASGI on uvicorn + aiohttp, no
   parsing), turnout, LiteLLM, Portkey — starts the gateway as ONE worker
   pinned to core 0 (`taskset -c 0`), checks that a normal and a streamed
   request come back right, and drives it:
   - first at saturation with `hey -c 64` (0 ms upstream), recording the
     gateway's CPU time per request;
   - then at fixed request rates, open loop (`peers/loadgen.py`, wrk2-style),
     non-streaming and streaming (time to first token), at each upstream
     latency, waiting after each until the gateway is idle again.
   Then it reads the gateway's peak RSS (VmHWM, summed over its process tree)
   and stops it. The load generators and the upstreams run on core 1.
5. Before each target it waits (up to `--max-wait`) until the machine is quiet:
   CPU busy over 2 s, with nothing of ours running, below `--max-busy`.
6. Prints tables: added latency p50/p90/p99 over the baseline measured in the
   same round (median over rounds of the per-round differences), max req/s of
   one worker and its ratio to the baseline, error rate, peak RSS; and the
   same for streaming TTFT. `--raw FILE` keeps every measurement and the tables.

Every load run is bounded: fixed-rate runs send `rate * duration` requests,
each cut after 10 s; hey runs for `--sat-duration` seconds. All traffic goes to
127.0.0.1, and everything listens there except Portkey's server, which binds
all interfaces (it has no host option). The peers' own phone-home is switched
off, and any other outbound HTTP(S) they attempt goes to a dead loopback proxy.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "peers"
CACHE = Path(os.environ.get("TURNOUT_BENCH_CACHE", Path.home() / ".cache" / "turnout-bench"))
GW_CORE, LOAD_CORE = 0, 1
PORTKEY_LOCKFILE_PINS = {"@hono/node-server": "1.13.5", "hono": "4.9.7"}
MODEL = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Say hello to the benchmark"}]
# Outbound HTTP(S) that is not to loopback goes nowhere (nothing listens on port 9).
NO_EGRESS = {
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
}  # fmt: skip


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)]


def start(argv: list[str], log: Path, core: int, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process pinned to `core`, in its own session, output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*pin(core), *argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **kwargs,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started, SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: it is up
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g}s") from exc
            time.sleep(0.25)


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of the process tree (live processes)."""
    total = 0
    for pid in tree(root):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tree_peak_rss_mb(root: int) -> float:
    """Sum of VmHWM over the process tree, MB."""
    total = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def drain(proc: subprocess.Popen[bytes] | None, limit: float = 60) -> float:
    """Wait until the gateway stops using CPU (an overloaded one may still be
    working off requests its client gave up on); return the seconds waited."""
    if proc is None:
        return 0.0
    start = time.monotonic()
    before = tree_cpu_seconds(proc.pid)
    while time.monotonic() - start < limit:
        time.sleep(0.5)
        now = tree_cpu_seconds(proc.pid)
        if now - before < 0.05:  # under 10 % of a core
            break
        before = now
    return time.monotonic() - start


def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all cores busy over `seconds`, from /proc/stat."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values[:8]), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(max_busy: float, max_wait: float, log: Callable[[str], None]) -> dict[str, float]:
    """Wait until the machine is quiet; return what it was when we went on."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy()
        load1 = os.getloadavg()[0]
        if busy <= max_busy or time.monotonic() > deadline:
            if busy > max_busy:
                log(f"  machine still busy ({busy:.0%}) after {max_wait:g}s: going on")
            return {"busy": busy, "load1": load1}
        log(f"  machine busy ({busy:.0%} of 2 cores, load {load1:.2f}): waiting")
        time.sleep(10)


# ---------------------------------------------------------------- installing the peers


def run_logged(argv: list[str], log: Path, timeout: float, **kwargs: Any) -> str | None:
    """Run an install step; None on success, else the tail of its output."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False, **kwargs).returncode  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{argv[0]}: {exc}"
    if code == 0:
        return None
    lines = [
        line for line in log.read_text(errors="replace").splitlines()
        if line.strip() and "is ignored: it is neither a file nor a directory" not in line
    ]  # fmt: skip
    return f"exit {code}: " + " | ".join(lines[-3:])


def install_litellm(version: str) -> tuple[Path | None, str]:
    """(venv, version or error) for LiteLLM proxy in its own venv under the cache."""
    venv = CACHE / f"litellm-{version}"
    marker = venv / ".turnout-bench-installed"
    if marker.exists():
        return venv, version
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"litellm-{version}-install.log"
    shutil.rmtree(venv, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    error = run_logged([base, "-m", "venv", str(venv)], log, 300)
    if error is None:
        error = run_logged(
            [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
             f"litellm[proxy]=={version}"], log, 1200,
        )  # fmt: skip
    if error is not None:
        return None, f"pip install litellm[proxy]=={version} failed: {error}"
    marker.write_text(version)
    return venv, version


def install_portkey(version: str) -> tuple[Path | None, str]:
    """(start-server.js, version or error) for the Portkey gateway under the cache.

    The npm package ships no lockfile, so a plain install resolves its
    `@hono/node-server: ^1.3.3` to the newest 1.x, whose lightweight Response
    keeps the upstream's immutable headers: every streamed chat completion then
    fails with `TypeError: immutable` (Portkey-AI/gateway issues 1389, 1550).
    `npm overrides` pin it and `hono` to the versions in Portkey's own lockfile,
    which is what their Docker image runs.
    """
    folder = CACHE / f"portkey-gateway-{version}"
    script = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    manifest = {
        "private": True,
        "dependencies": {"@portkey-ai/gateway": version},
        "overrides": PORTKEY_LOCKFILE_PINS,
    }
    pins = ", ".join(f"{k} {v}" for k, v in PORTKEY_LOCKFILE_PINS.items())
    detail = f"{version} (with {pins} as in its lockfile)"
    if script.exists() and json.loads((folder / "package.json").read_text()) == manifest:
        return script, detail
    if shutil.which("npm") is None or shutil.which("node") is None:
        return None, "node/npm not found (Debian: apt-get install -y nodejs npm)"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps(manifest, indent=2))
    log = CACHE / f"portkey-gateway-{version}-install.log"
    error = run_logged(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"], log,
                       1200, cwd=folder)  # fmt: skip
    if error is not None or not script.exists():
        return None, f"npm install @portkey-ai/gateway@{version} failed: {error or 'no build/'}"
    return script, detail


def turnout_source(ref: str) -> tuple[Path, str]:
    CACHE.mkdir(parents=True, exist_ok=True)
    """A clean export of `ref` (or the work tree itself for `worktree`)."""
    if ref == "worktree":
        return ROOT, "work tree"
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    dest = CACHE / "turnout-src" / sha
    if not (dest / "engine").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True,
                                 check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha[:10]


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    """Something to send load to: the upstream itself or a gateway in front of it."""

    name: str
    # (url, model, headers) for an upstream latency name
    request: Callable[[str], tuple[str, str, dict[str, str]]]
    # starts the gateway; None for the upstream itself
    launch: Callable[[Path], subprocess.Popen[bytes]] | None = None
    health: str = ""
    version: str = ""
    unavailable: str | None = None  # why it is not measured
    startup_timeout: float = 60


@dataclass
class Setup:
    python: str
    upstreams: dict[str, int]  # latency name -> port
    turnout_src: Path
    ports: dict[str, int] = field(default_factory=dict)


def make_targets(setup: Setup, args: argparse.Namespace) -> list[Target]:
    ups = setup.upstreams

    def direct(lat: str) -> tuple[str, str, dict[str, str]]:
        return f"http://127.0.0.1:{ups[lat]}/v1/chat/completions", MODEL, {}

    targets = [Target("direct", direct, version="fake upstream")]
    py = setup.python
    uvicorn_flags = ["--loop", "uvloop", "--http", "httptools", "--no-access-log",
                     "--log-level", "warning", "--host", "127.0.0.1"]  # fmt: skip

    # floor: raw ASGI + aiohttp, no parsing
    port = setup.ports["floor"] = free_port()
    floor_env = {
        **os.environ,
        "FLOOR_UPSTREAMS": ",".join(f"{lat}=http://127.0.0.1:{p}" for lat, p in ups.items()),
    }
    targets.append(Target(
        "floor (raw ASGI + aiohttp)",
        lambda lat, port=port: (f"http://127.0.0.1:{port}/{lat}/v1/chat/completions", MODEL, {}),
        lambda log, port=port: start(
            [py, "-m", "uvicorn", "floor:app", "--app-dir", str(HERE), "--port", str(port),
             *uvicorn_flags], log, GW_CORE, env=floor_env,
        ),
        health=f"http://127.0.0.1:{port}/",
        version=", ".join(f"{m} {_module_version(py, m)}" for m in ("uvicorn", "aiohttp")),
    ))  # fmt: skip

    # turnout: `turnout serve` with an openai-type provider per upstream
    port = setup.ports["turnout"] = free_port()
    policy = CACHE / "turnout-bench-routes.yaml"
    lines = ["version: 1", "providers:"]
    lines += [f'  up{lat}: {{type: openai, base_url: "http://127.0.0.1:{p}/v1", api_key: bench}}'
              for lat, p in ups.items()]  # fmt: skip
    lines.append("routes:")
    for lat in ups:
        lines += [f"  - name: bench-{lat}", f"    match: {{model: bench-{lat}}}",
                  f"    targets: [up{lat}/{MODEL}]"]  # fmt: skip
    policy.write_text("\n".join(lines) + "\n")
    turnout_env = {**os.environ, "PYTHONPATH": str(setup.turnout_src),
                   "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"}  # fmt: skip
    targets.append(Target(
        "turnout",
        lambda lat, port=port: (f"http://127.0.0.1:{port}/v1/chat/completions", f"bench-{lat}", {}),
        lambda log, port=port: start(
            [py, "-m", "turnout.cli", "serve", "--config", str(policy), "--port", str(port),
             "--no-watch", "--log-format", "json"], log, GW_CORE,
            cwd=setup.turnout_src, env=turnout_env,
        ),
        health=f"http://127.0.0.1:{port}/health",
        version=args.turnout_version,
    ))  # fmt: skip

    # LiteLLM proxy
    venv, detail = install_litellm(args.litellm_version) if "litellm" in args.peers else (None, "")
    if "litellm" in args.peers:
        port = setup.ports["litellm"] = free_port()
        config = CACHE / "litellm-bench-config.yaml"
        lines = ["model_list:"]
        for lat, p in ups.items():
            lines += [f"  - model_name: bench-{lat}", "    litellm_params:",
                      f"      model: openai/{MODEL}", f"      api_base: http://127.0.0.1:{p}/v1",
                      "      api_key: bench"]  # fmt: skip
        lines += ["litellm_settings:", "  telemetry: false", "  drop_params: true",
                  "general_settings:", "  disable_spend_logs: true"]  # fmt: skip
        if venv is not None:
            config.write_text("\n".join(lines) + "\n")
        litellm_env = {**os.environ, **NO_EGRESS, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                       "LITELLM_TELEMETRY": "False", "DO_NOT_TRACK": "1"}  # fmt: skip
        targets.append(Target(
            "LiteLLM proxy",
            lambda lat, port=port: (f"http://127.0.0.1:{port}/v1/chat/completions",
                                    f"bench-{lat}", {}),
            lambda log, port=port, venv=venv: start(
                [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                 "--port", str(port), "--num_workers", "1", "--telemetry", "False"],
                log, GW_CORE, env=litellm_env,
            ),
            health=f"http://127.0.0.1:{port}/health/liveliness",
            version=_litellm_stack(venv, detail) if venv is not None else "",
            unavailable=None if venv is not None else detail,
            startup_timeout=240,
        ))  # fmt: skip

    # Portkey gateway (Node)
    if "portkey" in args.peers:
        script, detail = install_portkey(args.portkey_version)
        port = setup.ports["portkey"] = free_port()

        def portkey_request(lat: str, port: int = port) -> tuple[str, str, dict[str, str]]:
            headers = {"x-portkey-provider": "openai",
                       "x-portkey-custom-host": f"http://127.0.0.1:{ups[lat]}/v1",
                       "authorization": "Bearer bench"}  # fmt: skip
            return f"http://127.0.0.1:{port}/v1/chat/completions", MODEL, headers

        portkey_env = {**os.environ, **NO_EGRESS, "NODE_ENV": "production"}
        targets.append(Target(
            "Portkey gateway",
            portkey_request,
            lambda log, port=port, script=script: start(
                ["node", str(script), f"--port={port}", "--headless"], log, GW_CORE,
                env=portkey_env, cwd=str(script.parent),
            ),
            health=f"http://127.0.0.1:{port}/",
            version=f"{detail}, node {_node_version()}" if script is not None else "",
            unavailable=None if script is not None else detail,
        ))  # fmt: skip
    return targets


def _relative(path: str) -> str:
    """``path`` relative to the checkout when it is inside it (raw files name no machine)."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return Path(path).name


def _module_version(python: str, module: str) -> str:
    out = subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() or "?"


def _litellm_stack(venv: Path, version: str) -> str:
    """The version, and what pip resolved its open-ended dependencies to."""
    code = ("import importlib.metadata as m\n"
            "for d in ('fastapi','starlette','uvicorn','openai','httpx','aiohttp','pydantic'):\n"
            "    try: print(d, m.version(d))\n"
            "    except m.PackageNotFoundError: print(d, 'absent')")  # fmt: skip
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, check=False).stdout.split("\n")  # fmt: skip
    return f"{version} (resolved: {', '.join(line for line in out if line)})"


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()  # fmt: skip
    except OSError:
        return "?"


# ---------------------------------------------------------------- load


def body_file(tmp: Path, model: str, stream: bool) -> Path:
    path = tmp / f"body-{model}-{'stream' if stream else 'plain'}.json"
    if not path.exists():
        body: dict[str, Any] = {"model": model, "messages": PROMPT}
        if stream:
            body["stream"] = True
        path.write_text(json.dumps(body))
    return path


def fixed_rate(python: str, url: str, body: Path, headers: dict[str, str], rate: float,
               duration: float, stream: bool) -> dict[str, Any]:  # fmt: skip
    argv = [*pin(LOAD_CORE), python, str(HERE / "loadgen.py"), "--url", url, "--body", str(body),
            "--rate", str(rate), "--duration", str(duration)]  # fmt: skip
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    if stream:
        argv.append("--stream")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.strip()[-500:]}")
    return dict(json.loads(out.stdout))


def saturate(url: str, body: Path, headers: dict[str, str], duration: float,
             connections: int) -> dict[str, Any]:  # fmt: skip
    argv = [*pin(LOAD_CORE), "hey", "-z", f"{duration}s", "-c", str(connections), "-t", "10",
            "-m", "POST", "-T", "application/json", "-D", str(body), "-o", "csv"]  # fmt: skip
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 60,
                         check=False)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    ok = sorted(float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200")
    span = max((float(r["offset"]) for r in rows), default=0.0) or duration

    def at(q: float) -> float | None:
        return ok[min(len(ok) - 1, int(q * len(ok)))] if ok else None

    # hey prints requests that got no response (connection errors, timeouts) only in
    # its summary; with -o csv they are rows with an empty status code.
    return {
        "requests": len(rows), "ok": len(ok), "errors": len(rows) - len(ok),
        "rps": len(ok) / span, "latency_ms": {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99)},
    }  # fmt: skip


def check_works(target: Target, lat: str, tmp: Path) -> None:
    """One plain and one streamed request must come back right through the target."""
    url, model, headers = target.request(lat)
    for stream in (False, True):
        data = body_file(tmp, model, stream).read_bytes()
        request = urllib.request.Request(
            url, data=data, headers={"content-type": "application/json", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except OSError as exc:
            detail = exc.read()[:300] if hasattr(exc, "read") else b""
            what = "stream" if stream else "request"
            raise RuntimeError(f"{what} failed: {exc} {detail!r}") from exc
        ok = b"[DONE]" in payload if stream else b'"choices"' in payload
        if not ok:
            raise RuntimeError(f"unexpected {'stream' if stream else 'reply'}: {payload[:300]!r}")


# ---------------------------------------------------------------- the run


def measure_target(target: Target, args: argparse.Namespace, setup: Setup, tmp: Path,
                   log: Callable[[str], None], record: Callable[[dict[str, Any]], None],
                   round_no: int) -> None:  # fmt: skip
    quiet = wait_quiet(args.max_busy, args.max_wait, log)
    log(f"round {round_no} · {target.name}: machine {quiet['busy']:.0%} busy, "
        f"load {quiet['load1']:.2f}")  # fmt: skip
    base = {"round": round_no, "target": target.name, **quiet}
    proc = None
    if target.launch is not None:
        gw_log = tmp / f"{target.name.split()[0].lower()}.log"
        proc = target.launch(gw_log)
        try:
            t0 = time.monotonic()
            wait_http(target.health, proc, target.startup_timeout)
            for lat in setup.upstreams:
                check_works(target, lat, tmp)
            base["startup_s"] = time.monotonic() - t0
        except RuntimeError as exc:
            tail = gw_log.read_text(errors="replace").strip().splitlines()[-3:]
            stop(proc)
            record({**base, "cell": "start", "error": f"{exc}; log: {' | '.join(tail)}"})
            log(f"  FAILED to start: {exc}")
            return
    try:
        # warm up code paths and connections, unmeasured
        first = next(iter(setup.upstreams))
        url, model, headers = target.request(first)
        saturate(url, body_file(tmp, model, False), headers, args.warmup, args.connections)
        drain(proc)
        # saturation first, while no earlier overload can still be draining
        cpu0 = tree_cpu_seconds(proc.pid) if proc else 0.0
        result = saturate(url, body_file(tmp, model, False), headers, args.sat_duration,
                          args.connections)  # fmt: skip
        if proc is not None and result["ok"]:
            result["cpu_ms_per_req"] = (tree_cpu_seconds(proc.pid) - cpu0) * 1000 / result["ok"]
        result["drain_s"] = drain(proc)
        cell = f"plain saturation {first}"
        record({**base, "cell": cell, **result})
        log(f"  {cell}: {_brief(result)}")
        for stream in (False, True):
            for lat in setup.upstreams:
                url, model, headers = target.request(lat)
                for rate in args.rates:
                    cell = f"{'stream' if stream else 'plain'} {rate:g}/s {lat}"
                    try:
                        result = fixed_rate(setup.python, url, body_file(tmp, model, stream),
                                            headers, rate, args.duration, stream)  # fmt: skip
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        result = {"error": str(exc)}
                    result["drain_s"] = drain(proc)
                    record({**base, "cell": cell, **result})
                    log(f"  {cell}: {_brief(result)}")
        if proc is not None:
            record({**base, "cell": "memory", "peak_rss_mb": tree_peak_rss_mb(proc.pid)})
    finally:
        if proc is not None:
            stop(proc)


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"][:200]
    lat = result["latency_ms"]
    text = f"{result['rps']:.0f} req/s, p50 {_f(lat['p50'])} p99 {_f(lat['p99'])} ms"
    if "ttft_ms" in result:
        text += f", ttft p50 {_f(result['ttft_ms']['p50'])} ms"
    if result.get("errors"):
        text += f", {result['errors']} errors {result.get('error_samples', '')}"
    if result.get("drain_s", 0) > 1:
        text += f", busy {result['drain_s']:.0f}s after the run"
    if "cpu_ms_per_req" in result:
        text += f", {result['cpu_ms_per_req']:.2f} ms CPU/req"
    return text


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# ---------------------------------------------------------------- tables


def tables(records: list[dict[str, Any]], targets: list[Target]) -> str:
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for rec in records:
        by.setdefault((rec["target"], rec["cell"]), {})[rec["round"]] = rec
    cells = [c for (t, c) in by if t == "direct"]
    fixed = [c for c in cells if "saturation" not in c]
    sat = [c for c in cells if "saturation" in c]
    measured = {name for name, _ in by}
    gateways = [t for t in targets if t.name != "direct" and (t.unavailable or t.name in measured)]
    out: list[str] = []

    def failed(t: Target) -> str | None:
        if t.unavailable:
            return f"not installed: {t.unavailable}"
        starts = [r for (name, cell), rs in by.items() if name == t.name and cell == "start"
                  for r in rs.values()]  # fmt: skip
        return f"did not start: {starts[0]['error']}" if starts else None

    def added(name: str, cell: str, key: str, q: str) -> tuple[float | None, float | None]:
        """Median over rounds of (target - direct) and of target / direct."""
        diffs, ratios = [], []
        for rnd, rec in by.get((name, cell), {}).items():
            base = by.get(("direct", cell), {}).get(rnd)
            if base is None or key not in rec or key not in base:
                continue
            g, d = rec[key][q], base[key][q]
            if g is None or d is None:
                continue
            diffs.append(g - d)
            ratios.append(g / d if d else float("nan"))
        if not diffs:
            return None, None
        return statistics.median(diffs), statistics.median(ratios)

    def error_rate(name: str, cell: str) -> str:
        recs = list(by.get((name, cell), {}).values())
        sent = sum(r.get("requests", 0) for r in recs)
        errs = sum(r.get("errors", 0) for r in recs)
        if not sent:
            return "—"
        return f"{100 * errs / sent:.2f} %" if errs else "0"

    def median_of(name: str, cell: str, key: str, q: str | None = None) -> float | None:
        vals = []
        for rec in by.get((name, cell), {}).values():
            v = rec.get(key)
            if q is not None and isinstance(v, dict):
                v = v.get(q)
            if isinstance(v, (int, float)):
                vals.append(float(v))
        return statistics.median(vals) if vals else None

    modes = ((False, "latency_ms", "Non-streaming: added latency"),
             (True, "ttft_ms", "Streaming: added time to first token"))  # fmt: skip
    for stream, key, title in modes:
        mode = "stream" if stream else "plain"
        rows = [c for c in fixed if c.startswith(mode)]
        out.append(f"\n### {title} over the upstream alone (ms, median over rounds)\n")
        out.append("| gateway | load (rate, upstream latency) | achieved req/s | baseline p50 | "
                   "added p50 | added p90 | added p99 | p50 ratio | errors |")  # fmt: skip
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in gateways:
            why = failed(t)
            if why:
                out.append(f"| {t.name} | all | {why} | | | | | | |")
                continue
            for cell in rows:
                _, rate, lat = cell.split()
                a50, r50 = added(t.name, cell, key, "p50")
                a90, _ = added(t.name, cell, key, "p90")
                a99, _ = added(t.name, cell, key, "p99")
                rps = median_of(t.name, cell, "rps")
                base = median_of("direct", cell, key, "p50")
                out.append(
                    f"| {t.name} | {rate} · {lat} | {_n(rps, 0)} | {_n(base)} | **{_n(a50)}** | "
                    f"{_n(a90)} | {_n(a99)} | {_n(r50, 1)}x | {error_rate(t.name, cell)} |"
                )
    for cell in sat:
        out.append(f"\n### Saturation ({cell.split()[-1]} upstream, hey -c 64): one worker\n")
        out.append("| target | max req/s | vs upstream alone | turnout vs it | p50 ms | p99 ms | "
                   "gateway CPU ms/req | errors | peak RSS MB |")  # fmt: skip
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        direct_rps = median_of("direct", cell, "rps")
        turnout_rps = median_of("turnout", cell, "rps")
        for t in [targets[0], *gateways]:
            why = failed(t)
            if why:
                out.append(f"| {t.name} | {why} | | | | | | | |")
                continue
            rps = median_of(t.name, cell, "rps")
            vs_direct = rps / direct_rps if rps and direct_rps else None
            vs_turnout = turnout_rps / rps if rps and turnout_rps else None
            rss = max((r.get("peak_rss_mb", 0) for r in by.get((t.name, "memory"), {}).values()),
                      default=None)  # fmt: skip
            out.append(
                f"| {t.name} | **{_n(rps, 0)}** | {_n(vs_direct, 3)} | {_n(vs_turnout, 2)}x | "
                f"{_n(median_of(t.name, cell, 'latency_ms', 'p50'))} | "
                f"{_n(median_of(t.name, cell, 'latency_ms', 'p99'))} | "
                f"{_n(median_of(t.name, cell, 'cpu_ms_per_req'))} | {error_rate(t.name, cell)} | "
                f"{_n(rss, 0)} |"
            )
    return "\n".join(out) + "\n"


def tables_from_raw(text: str) -> str:
    """The tables again, from the `RECORD` lines of a raw file (e.g. of an interrupted run)."""
    records = [json.loads(line[7:]) for line in text.splitlines() if line.startswith("RECORD ")]
    names = list(dict.fromkeys(rec["target"] for rec in records))
    unavailable = {}
    for line in text.splitlines():
        name, sep, why = line.partition(": NOT INSTALLED: ")
        if sep:
            names.append(name)
            unavailable[name] = why
    targets = [
        Target(name, lambda lat: ("", "", {}), unavailable=unavailable.get(name)) for name in names
    ]
    return tables(records, targets)


def _n(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def machine(args: argparse.Namespace, targets: list[Target]) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    lines = [
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine: nproc={os.cpu_count()}, CPU {cpu!r}, {int(mem) // 2**20} GiB, "
        f"Linux {platform.release()}",
        f"python: {platform.python_version()} ({_relative(sys.executable)})",
        *[f"{t.name}: {t.version or t.unavailable}" for t in targets],
        f"pinning: each gateway alone on core {GW_CORE} (taskset); fake upstreams, "
        f"load generators and this script on core {LOAD_CORE}",
        f"load: fixed rates {', '.join(f'{r:g}' for r in args.rates)} req/s open loop "
        f"(benchmarks/peers/loadgen.py, aiohttp) for {args.duration:g}s each after 1s warm-up; "
        f"saturation hey -c {args.connections} for {args.sat_duration:g}s; "
        f"{args.rounds} rounds; reply {args.reply_words} words",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8, help="s per fixed-rate cell")
    parser.add_argument("--sat-duration", type=float, default=8, help="s of hey at saturation")
    parser.add_argument("--warmup", type=float, default=5,
                        help="s of unmeasured hey before the first cell (V8 JIT)")  # fmt: skip
    parser.add_argument("--rates", default="100,200", help="req/s, comma-separated")
    parser.add_argument("--latencies", default="0ms,50ms", help="upstream latencies")
    parser.add_argument("--reply-words", type=int, default=20, help="response size")
    parser.add_argument("--connections", type=int, default=64, help="hey -c at saturation")
    parser.add_argument("--peers", default="litellm,portkey", help="which peers to run")
    parser.add_argument("--only", default="",
                        help="measure only targets whose name contains one of these "
                             "(comma-separated); the upstream alone always runs")  # fmt: skip
    parser.add_argument("--litellm-version", default="1.80.17")
    parser.add_argument("--portkey-version", default="1.15.2")
    parser.add_argument("--turnout-ref", default="HEAD", help="commit to measure, or 'worktree'")
    parser.add_argument("--max-busy", type=float, default=0.25,
                        help="wait before each target until CPU busy is below this")  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=300, help="s to wait for quiet")
    parser.add_argument("--quick", action="store_true", help="1 round, 3 s cells: a smoke run")
    parser.add_argument("--raw", type=Path, help="write every measurement and the tables here")
    parser.add_argument("--tables-from", type=Path, metavar="RAW",
                        help="only print the tables from an earlier --raw file")  # fmt: skip
    args = parser.parse_args()
    if args.tables_from:
        print(tables_from_raw(args.tables_from.read_text()))
        return 0
    if args.quick:
        args.rounds, args.duration, args.sat_duration = 1, 3, 3
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    only = [word.strip().lower() for word in args.only.split(",") if word.strip()]
    for tool in ("hey", "taskset"):
        if shutil.which(tool) is None:
            print(f"SKIPPED: `{tool}` is not installed (apt-get install -y {tool})")
            return 0
    if (os.cpu_count() or 1) < 2:
        print("SKIPPED: needs 2 cores (gateway on one, load and upstream on the other)")
        return 0
    os.sched_setaffinity(0, {LOAD_CORE})

    raw_lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        raw_lines.append(line)

    records: list[dict[str, Any]] = []

    def record(rec: dict[str, Any]) -> None:
        records.append(rec)
        raw_lines.append("RECORD " + json.dumps(rec))

    src, args.turnout_version = turnout_source(args.turnout_ref)
    args.turnout_version = f"commit {args.turnout_version}"
    tmp = Path(tempfile.mkdtemp(prefix="turnout-peers-"))
    python = sys.executable
    upstream_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    upstreams: dict[str, int] = {}
    procs = []
    try:
        for lat in args.latencies.split(","):
            port = upstreams[lat.strip()] = free_port()
            procs.append(start(
                [python, "-m", "tests.fakes.openai_upstream", "--port", str(port), "--latency",
                 lat.strip(), "--reply-words", str(args.reply_words), "--loop", "uvloop"],
                tmp / f"upstream-{lat.strip()}.log", LOAD_CORE, cwd=ROOT, env=upstream_env,
            ))  # fmt: skip
        for port, proc in zip(upstreams.values(), procs, strict=True):
            wait_http(f"http://127.0.0.1:{port}/v1/models", proc, 20)
        setup = Setup(python, upstreams, src)
        targets = make_targets(setup, args)
        header = machine(args, targets)
        log(header)
        for round_no in range(1, args.rounds + 1):
            for target in targets:
                if (
                    only
                    and target.name != "direct"
                    and not any(word in target.name.lower() for word in only)
                ):
                    continue
                if target.unavailable:
                    if round_no == 1:
                        log(f"{target.name}: NOT INSTALLED: {target.unavailable}")
                    continue
                measure_target(target, args, setup, tmp, log, record, round_no)
        table = tables(records, targets)
        log(table)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
        if args.raw:
            args.raw.parent.mkdir(parents=True, exist_ok=True)
            args.raw.write_text("\n".join(raw_lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
