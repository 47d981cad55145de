"""The ``turnout`` command: write, check and serve a policy, explain a plan, chat."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from turnout.contract.registry import PluginError, collect_registry, make_plugin_manager
from turnout.engine import Engine
from turnout.errors import PolicyError, TurnoutError
from turnout.policy.compile import compile_policy
from turnout.policy.loader import load_document
from turnout.policy.models import Policy
from turnout.routing.planner import plan_request
from turnout.wire.chat import ChatRequest

__all__ = ["main"]

DEFAULT_CONFIG = os.environ.get("TURNOUT_CONFIG", "routes.yaml")


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in values or ():
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"turnout: {flag} takes key=value, got {item!r}")
        out[key] = value
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cmd_check(args: argparse.Namespace) -> int:
    registry = collect_registry(make_plugin_manager())
    document = load_document(args.file)
    table = compile_policy(document, registry.providers, registry.strategies, registry.guardrails)
    if not table.providers:
        what = "is empty" if document.data is None else "declares no providers"
        print(
            f"{args.file}: {what}: nothing can be served. Declare providers and routes "
            "(`turnout init` writes a commented starter policy).",
            file=sys.stderr,
        )
        return 1
    disabled = [f"{p.name} ({p.disabled})" for p in table.providers.values() if p.disabled]
    routes, providers = _count(len(table.routes), "route"), _count(len(table.providers), "provider")
    print(f"{args.file}: OK — {routes}, {providers}")
    if not table.routes:
        print("  warning: no routes: only direct provider/model names will be served")
    for line in disabled:
        print(f"  note: provider {line}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write the commented starter policy (never over an existing file unless --force)."""
    from pathlib import Path

    from turnout.starter import STARTER_POLICY

    path = Path(args.file)
    if path.exists() and not args.force:
        raise SystemExit(f"turnout: {path} already exists; keep it, or pass --force to replace it")
    path.write_text(STARTER_POLICY, encoding="utf-8")
    serve = "turnout serve" + ("" if args.file == DEFAULT_CONFIG else f" --config {path}")
    print(f"wrote {path}: check it with `turnout check {path}`, serve it with `{serve}`")
    return 0


def _port_free(host: str, port: int) -> str | None:
    """None if ``host:port`` can be bound now, else why not (one line)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is already in use (another turnout serve, or another server)"
            return f"cannot be bound: {exc.strerror or exc}"
    return None


def cmd_plan(args: argparse.Namespace) -> int:
    import random

    registry = collect_registry(make_plugin_manager())
    table = compile_policy(
        load_document(args.file), registry.providers, registry.strategies, registry.guardrails
    )
    if args.messages:
        return _plan_messages(args, table)
    if not args.model:
        print("turnout plan: give --model (or --messages FILE)", file=sys.stderr)
        return 2
    body: dict[str, Any] = {
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
    }
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    if args.user:
        body["user"] = args.user
    if args.metadata:
        body["metadata"] = _pairs(args.metadata, "--metadata")
    if args.fallback:
        body["fallbacks"] = args.fallback
    headers = {k.lower(): v for k, v in _pairs(args.header, "--header").items()}
    rng = random.Random(args.seed) if args.seed is not None else None
    key = _named_key(table, args.key) if args.key else None
    request = ChatRequest.model_validate(body)
    plan = plan_request(
        request, table, headers=headers, rng=rng, prompt_tokens=args.prompt_tokens, key=key
    )
    if key is not None and not key.allows(plan.route.name, request.model):
        print(
            f"turnout plan: key {key.name!r} may not use model {request.model!r} "
            f"(route {plan.route.name!r}): the gateway answers 403",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.explain())
    return 0 if plan.attempts else 2


def _named_key(table: Any, name: str) -> Any:
    """The policy's key called ``name`` (the operator names it; no secret needed)."""
    from turnout.policy.limits import ApiKeyInfo

    clients = table.policy.keys.clients if table.policy.keys is not None else {}
    if name not in clients:
        known = ", ".join(sorted(clients)) or "none: the policy has no keys:"
        raise SystemExit(f"turnout plan: no key named {name!r} (keys: {known})")
    return ApiKeyInfo(name, clients[name])


def _plan_messages(args: argparse.Namespace, table: Any) -> int:
    """``turnout plan --messages FILE``: the plan of a Messages request, and for
    each attempt whether it goes native or translated."""
    import random
    from pathlib import Path

    from turnout.surfaces.messages.operation import Turn, attempt_modes
    from turnout.surfaces.messages.wire import parse_messages_request

    text = sys.stdin.read() if args.messages == "-" else Path(args.messages).read_text()
    headers = {k.lower(): v for k, v in _pairs(args.header, "--header").items()}
    try:
        request, raw = parse_messages_request(text)
    except TurnoutError as exc:
        print(f"turnout plan: {args.messages}: {exc.message}", file=sys.stderr)
        return 2
    turn = Turn(request, raw, headers, "msg_plan")
    rng = random.Random(args.seed) if args.seed is not None else None
    plan = plan_request(turn.planning, table, headers=headers, rng=rng)
    modes = attempt_modes(turn, plan)
    if args.json:
        print(json.dumps({**plan.to_dict(), "surface": "messages", "modes": modes}, indent=2))
    else:
        print(plan.explain())
        print("on /v1/messages:")
        for line in modes:
            print(f"  {line}")
    return 0 if plan.attempts else 2


def cmd_schema(args: argparse.Namespace) -> int:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "turnout routes.yaml"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    engine = Engine.from_file(args.config)
    body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}

    async def run() -> None:
        try:
            if args.stream:
                stream = engine.stream(body)
                async for chunk in stream:
                    for choice in chunk.choices:
                        print(choice.delta.content or "", end="", flush=True)
                print()
                fields = stream.extra_fields
            else:
                response = await engine.chat(body)
                print(response.choices[0].message.content)
                fields = response.extra_fields
            if fields is None:
                return
            trail = " → ".join(f"{a.provider}/{a.model}:{a.outcome}" for a in fields.attempts)
            print(
                f"[{fields.provider} via route {fields.route}, {fields.latency} ms, {trail}]",
                file=sys.stderr,
            )
        finally:
            await engine.aclose()

    asyncio.run(run())
    return 0


def cmd_key_hash(args: argparse.Namespace) -> int:
    """Print the ``hash:`` line of a gateway API key for ``keys: clients:``."""
    import secrets

    from turnout.policy.limits import hash_key

    salt = args.salt
    if salt is None:
        keys = load_document(args.config).data
        keys = keys.get("keys") if isinstance(keys, dict) else None
        salt = keys.get("salt") if isinstance(keys, dict) else None
        if not isinstance(salt, str) or len(salt) < 16:
            raise SystemExit(
                f"turnout: {args.config} has no keys: salt: (16+ characters); add one, "
                f"e.g. salt: {secrets.token_hex(16)}, or pass --salt"
            )
    key = args.key
    if key == "-":
        key = sys.stdin.readline().strip()
    elif key is None:
        key = "tk-" + secrets.token_urlsafe(32)
        print(f"# new key (give it to the client; only its hash is kept): {key}")
    if not key:
        raise SystemExit("turnout: the key is empty")
    print(f"hash: {hash_key(salt, key)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from turnout.http import ServeOptions, serve

    if args.workers < 1:
        raise SystemExit("turnout: --workers must be at least 1")
    load_document(args.config)  # a missing file: say where we looked, before anything starts
    problem = _port_free(args.host, args.port)
    if problem is not None:
        raise SystemExit(
            f"turnout: cannot serve on {args.host}:{args.port}: the address {problem}; "
            f"pick another with --port (e.g. --port {args.port + 1})"
        )
    return serve(
        ServeOptions(
            config=args.config,
            host=args.host,
            port=args.port,
            workers=args.workers,
            watch=None if args.no_watch else args.watch_interval,
            drain_timeout=args.drain_timeout,
            shutdown_delay=args.shutdown_delay,
            log_format=args.log_format,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout", description="Declarative routing engine for LLM chat completions."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a policy; print every problem")
    check.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check)

    plan = sub.add_parser("plan", help="explain how a request would be routed (no call made)")
    plan.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    plan.add_argument("--model", help="the request's model (required unless --messages)")
    plan.add_argument(
        "--messages",
        metavar="FILE",
        help="plan an Anthropic /v1/messages request body (a JSON file, - for stdin)",
    )
    plan.add_argument("--prompt", default="Hello")
    plan.add_argument("--prompt-tokens", type=int, help="assume a prompt of this many tokens")
    plan.add_argument("--max-tokens", type=int)
    plan.add_argument("--user")
    plan.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    plan.add_argument("--header", action="append", metavar="NAME=VALUE")
    plan.add_argument("--fallback", action="append", metavar="PROVIDER/MODEL")
    plan.add_argument(
        "--key", metavar="NAME", help="plan as the policy's key NAME sees it (its routes, models)"
    )
    plan.add_argument("--seed", type=int, help="fix the weighted choice")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_plan)

    init = sub.add_parser("init", help="write a commented starter policy (offline: mock provider)")
    init.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=cmd_init)

    schema = sub.add_parser("schema", help="print the JSON Schema of routes.yaml")
    schema.set_defaults(func=cmd_schema)

    chat = sub.add_parser("chat", help="send one request in-process and print the answer")
    chat.add_argument("prompt")
    chat.add_argument("--model", default="smart")
    chat.add_argument("--config", default=DEFAULT_CONFIG)
    chat.add_argument("--stream", action="store_true")
    chat.set_defaults(func=cmd_chat)

    key = sub.add_parser("key", help="gateway API keys (the keys: section)")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    key_hash = key_sub.add_parser(
        "hash", help="print the hash: line of a key for routes.yaml (a new key if none given)"
    )
    key_hash.add_argument("key", nargs="?", help="the key; - reads it from stdin")
    key_hash.add_argument("--config", default=DEFAULT_CONFIG, help="policy with keys: salt:")
    key_hash.add_argument("--salt", help="the salt, instead of reading it from --config")
    key_hash.set_defaults(func=cmd_key_hash)

    serve = sub.add_parser(
        "serve", help="run the HTTP gateway (OpenAI-compatible /v1/chat/completions)"
    )
    serve.add_argument(
        "--config", default=DEFAULT_CONFIG, help="policy file (default: %(default)s)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    serve.add_argument("--port", type=int, default=8080, help="default: %(default)s")
    serve.add_argument("--workers", type=int, default=1, help="processes (default: %(default)s)")
    serve.add_argument(
        "--no-watch", action="store_true", help="do not reload when the policy file changes"
    )
    serve.add_argument("--watch-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    serve.add_argument(
        "--drain-timeout",
        type=int,
        default=30,
        help="seconds to let in-flight requests finish on SIGTERM (default: %(default)s)",
    )
    serve.add_argument(
        "--shutdown-delay",
        type=float,
        default=0.0,
        help="seconds to keep serving after SIGTERM while /ready answers 503, so load "
        "balancers stop sending traffic before connections are refused (default: %(default)s)",
    )
    serve.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="auto: console on a terminal, JSON lines otherwise",
    )
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (TurnoutError, PluginError) as exc:
        print(f"turnout: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
