"""CPU per request of the Responses API, Anthropic Messages, legacy completions and
embeddings next to chat
completions, in-process with the mock provider (the surfaces' translation and
storing is what differs; the engine's path behind them is the same).

    taskset -c 0 python benchmarks/bench_surfaces.py [--rounds 5] [--n 3000]

Each case runs ``n`` requests back to back on one event loop; a round reports
CPU µs per request (process_time), the table the median over rounds, and the
ratio to chat completions measured in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout import Engine  # noqa: E402
from turnout.surfaces.completion_ops import CompletionsAPI  # noqa: E402
from turnout.surfaces.embeddings import EmbeddingsAPI  # noqa: E402
from turnout.surfaces.messages import MessagesAPI  # noqa: E402
from turnout.surfaces.responses import ResponsesAPI  # noqa: E402

POLICY = """
providers: {mock: {type: mock}}
routes:
  - {name: smart, match: {model: smart}, targets: [mock/echo]}
  - {name: embed, match: {model: embed}, targets: [mock/embed]}
  - {name: cached, match: {model: cached}, targets: [mock/embed], cache: {ttl: 10m}}
"""
TEXT = "Hello, how are you?"


async def _cases(engine: Engine) -> dict[str, Callable[[], Awaitable[object]]]:
    responses = ResponsesAPI(engine)
    completions = CompletionsAPI(engine)
    messages = MessagesAPI(engine)
    embeddings = EmbeddingsAPI(engine)
    batch = [f"{TEXT} {i}" for i in range(16)]
    chat = {"model": "smart", "messages": [{"role": "user", "content": TEXT}]}
    message = {**chat, "max_tokens": 256}

    async def chat_stream() -> None:
        async for _ in engine.stream({**chat, "stream": True}):
            pass

    async def responses_stream() -> None:
        async for _ in await responses.stream({"model": "smart", "input": TEXT, "stream": True}):
            pass

    async def messages_stream() -> None:
        async for _ in messages.stream({**message, "stream": True}):
            pass

    return {
        "chat.completions": lambda: engine.chat(chat),
        "messages (translated)": lambda: messages.create(message),
        "responses (store: false)": lambda: responses.create(
            {"model": "smart", "input": TEXT, "store": False}
        ),
        "responses (stored, memory)": lambda: responses.create({"model": "smart", "input": TEXT}),
        "completions": lambda: completions.create({"model": "smart", "prompt": TEXT}),
        "embeddings (1 input, float)": lambda: embeddings.create(
            {"model": "embed", "input": TEXT, "encoding_format": "float"}
        ),
        "embeddings (16 inputs, base64)": lambda: embeddings.create(
            {"model": "embed", "input": batch, "encoding_format": "base64"}
        ),
        "embeddings (cache hit)": lambda: embeddings.create({"model": "cached", "input": TEXT}),
        "chat.completions stream": chat_stream,
        "responses stream (stored)": responses_stream,
        "messages stream (translated)": messages_stream,
    }


async def _round(n: int) -> dict[str, float]:
    engine = Engine.from_yaml(POLICY, autoload=False)
    cases = await _cases(engine)
    out = {}
    for name, call in cases.items():
        for _ in range(200):
            await call()
        t0 = time.process_time()
        for _ in range(n):
            await call()
        out[name] = (time.process_time() - t0) / n * 1e6
    await engine.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    rounds = [asyncio.run(_round(args.n)) for _ in range(args.rounds)]
    print(f"{'case':<30} {'CPU µs/request':>15} {'vs chat':>8}")
    for name in rounds[0]:
        median = statistics.median(r[name] for r in rounds)
        base = "chat.completions stream" if "stream" in name else "chat.completions"
        ratio = statistics.median(r[name] / r[base] for r in rounds)
        print(f"{name:<30} {median:>15.1f} {ratio:>7.2f}x")


if __name__ == "__main__":
    main()
