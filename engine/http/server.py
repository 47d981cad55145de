"""Running the gateway: uvicorn (uvloop + httptools), workers, signals, draining.

One worker: the policy is compiled in this process, then served. ``N``
workers: the policy is checked here first (a broken file fails fast), then
uvicorn's supervisor starts N processes that each build the app with
``app_from_env``; Prometheus runs in multiprocess mode over a temporary
directory so ``/metrics`` on any worker reports all of them, and SIGHUP to the
supervisor is forwarded to every worker (each reloads its policy) instead of
uvicorn's default of restarting them.

SIGTERM / SIGINT: ``/ready`` answers 503 from then on; after
``shutdown_delay`` seconds of serving as usual (so load balancers polling
``/ready`` stop sending traffic), uvicorn stops accepting connections and
waits up to ``drain_timeout`` seconds for in-flight requests (streams
included) before cancelling them. With workers, each one drains on the
SIGTERM the supervisor forwards.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnout.policy.models import Gateway

__all__ = ["ServeOptions", "app_from_env", "build_app", "serve"]

_ENV = "TURNOUT_SERVE_"


@dataclass(frozen=True)
class ServeOptions:
    config: str = "routes.yaml"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    watch: float | None = 1.0
    drain_timeout: int = 30
    shutdown_delay: float = 0.0
    log_format: str = "auto"


def build_app(
    config: str, watch: float | None = 1.0, *, sighup: bool = True, shutdown_delay: float = 0.0
) -> object:
    """The gateway app for policy file ``config`` with hot reload and draining on
    SIGTERM (raises PolicyError)."""
    from turnout.engine import Engine
    from turnout.http.app import Gateway
    from turnout.http.drain import Drain
    from turnout.http.reload import PolicyReloader

    engine = Engine.from_file(config)
    reloader = PolicyReloader(engine, config, interval=watch, sighup=sighup)
    return Gateway(engine, reloader, drain=Drain(shutdown_delay))


GC_YOUNG_THRESHOLD = 10_000
"""Net new container objects between young-generation collections (CPython's
default is 700). A request's objects die by reference counting, but with dozens
of requests in flight the net count still passed 700 every ~18 requests and
each collection walked the requests in flight for nothing (≈7 µs a request at
saturation); at 10,000, 20k requests ran without one (benchmarks/RESULTS.md)."""


def settle_heap() -> None:
    """Once the app is built: move what startup made (modules, the compiled
    policy, pydantic's validators: ≈100k objects) out of the collector's sight,
    so a full collection walks only what serving made (≈1 ms instead of ≈65 ms,
    a stall of every request in flight, ≈16 µs a request on average at
    saturation); and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _limits(gateway: Gateway) -> dict[str, Any]:
    """uvicorn settings from the policy's ``gateway:`` section: the protocol that
    bounds request heads (size and time), and the cap on concurrent connections."""
    from turnout.http.protocol import GuardedHttpToolsProtocol

    return {
        "http": GuardedHttpToolsProtocol,
        "limit_concurrency": gateway.max_connections,
        "h11_max_incomplete_event_size": int(gateway.max_header_bytes),
    }


def _config(gateway: Gateway, **settings: Any) -> Any:
    import uvicorn
    from turnout.http.protocol import HEADER_TIMEOUT, SEND_TIMEOUT

    config = uvicorn.Config(**settings, **_limits(gateway))
    setattr(config, HEADER_TIMEOUT, gateway.header_timeout)
    setattr(config, SEND_TIMEOUT, gateway.send_timeout)
    return config


def app_from_env() -> object:
    """The app factory each worker process calls (options come from the environment)."""
    from turnout.http.logs import configure_logging

    configure_logging(os.environ.get(_ENV + "LOG_FORMAT", "auto"))  # type: ignore[arg-type]
    watch = os.environ.get(_ENV + "WATCH", "")
    delay = float(os.environ.get(_ENV + "SHUTDOWN_DELAY") or 0)
    app = build_app(
        os.environ[_ENV + "CONFIG"], float(watch) if watch else None, shutdown_delay=delay
    )
    settle_heap()
    return app


def serve(options: ServeOptions) -> int:
    """Run the gateway until SIGTERM / SIGINT; return the exit code."""
    if options.workers > 1:
        return _serve_workers(options)
    import uvicorn
    from turnout.http.logs import configure_logging

    configure_logging(options.log_format)  # type: ignore[arg-type]
    app = build_app(options.config, options.watch, shutdown_delay=options.shutdown_delay)
    config = _config(
        app.engine.table.policy.gateway,  # type: ignore[attr-defined]
        app=app,
        host=options.host,
        port=options.port,
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(options.drain_timeout),
        server_header=False,
    )
    server = uvicorn.Server(config)
    settle_heap()
    server.run()
    return 0 if server.started else 1


def _serve_workers(options: ServeOptions) -> int:
    from turnout.engine import Engine
    from turnout.http.logs import configure_logging
    from uvicorn.supervisors.multiprocess import Multiprocess

    configure_logging(options.log_format)  # type: ignore[arg-type]
    table = Engine.from_file(options.config).table  # a broken policy fails here
    limits = table.limits
    if limits is not None and limits.metered and limits.state.backend == "memory":
        raise SystemExit(
            f"turnout: --workers {options.workers} cannot share in-memory state: each worker "
            "would count budgets, rate limits and breakers on its own. Keep them in SQLite "
            "(state: {backend: sqlite, path: turnout-state.db}) or Redis "
            "(state: {backend: redis, url: redis://host:6379/0}) in "
            f"{options.config}, or run one worker."
        )
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="turnout-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    os.environ[_ENV + "CONFIG"] = os.path.abspath(options.config)
    os.environ[_ENV + "WATCH"] = "" if options.watch is None else str(options.watch)
    os.environ[_ENV + "LOG_FORMAT"] = options.log_format
    os.environ[_ENV + "SHUTDOWN_DELAY"] = str(options.shutdown_delay)
    config = _config(
        table.policy.gateway,
        app="turnout.http.server:app_from_env",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        # uvicorn kills a worker that has not answered its supervisor within 5 s;
        # importing and compiling on a busy 2-core host can take longer than that
        timeout_worker_healthcheck=60,
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(options.drain_timeout),
        server_header=False,
    )

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            for process in self.processes:
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGHUP)

    try:
        sock = config.bind_socket()
        Supervisor(config, sockets=[sock]).run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0
