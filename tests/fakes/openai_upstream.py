"""A fake OpenAI chat-completions upstream that really listens on loopback.

Tests, gateway tests and benchmarks point real HTTP clients at it, so what it
sends is what a client would see from the real API: `chat.completion` JSON,
`chat.completion.chunk` Server-Sent Events ending in `data: [DONE]`,
embeddings lists (`tests.fakes.openai_embeddings`), and OpenAI-shaped error
bodies. Faults (error statuses, delays, resets, truncated
or stalled streams, malformed bodies) happen on the wire, not in a mock.

    with FakeOpenAI() as fake:
        fake.script(Fault.status(503), Fault.status(429, retry_after=1))
        client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)

A request's behaviour is the next scripted fault if any, else the one named by
its `x-fake-fault` header (see `Fault.parse`), else success: the assistant
echoes the last user message ("echo: <text>"), or calls the first tool when
the request has `tools` and that message contains "call_tool".

It runs on the shared loopback server (`tests.fakes.server`, opened by
`tests.fakes.upstream`), cheap enough to act as the upstream in benchmarks:
`python -m tests.fakes.openai_upstream --port 9100 --latency 50ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable, Iterable
from typing import Any, Unpack

from tests.fakes.faults import FAULT_HEADER, Fault, parse_duration
from tests.fakes.openai_embeddings import embeddings_answer, validate_embeddings_request
from tests.fakes.openai_wire import Completion, error_object, model_list, validate_chat_request
from tests.fakes.server import Reply
from tests.fakes.upstream import Call, FakeUpstream, Options, RecordedRequest

__all__ = ["FAULT_HEADER", "FakeOpenAI", "Fault", "RecordedRequest", "parse_duration"]

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini")


class FakeOpenAI(FakeUpstream):
    """A fake OpenAI upstream on its own thread and event loop.

    :param reply_words: make every reply exactly this many words (benchmarks).
    :param models: ids listed by `GET /v1/models`.

    and the options every fake takes (`tests.fakes.upstream.Options`).
    """

    base_path = "/v1"

    def __init__(
        self,
        *,
        reply_words: int | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        **options: Unpack[Options],
    ) -> None:
        super().__init__(**options)
        self.reply_words = reply_words
        self.models = tuple(models)

    def answer(self, call: Call) -> Reply:
        early = self.early_fault(call)
        if early is not None:
            return early  # before the request is even looked at
        if call.path == "/v1/chat/completions" and call.method == "POST":
            problem: dict[str, Any] | None
            if call.bad_json:
                problem = error_object(400, "We could not parse the JSON body of your request.")
            else:
                problem = validate_chat_request(call.body)
            if problem is not None:
                return self.reject(call, 400, problem)
            completion = Completion(call.body, "chatcmpl-" + call.ident, self.reply_words)
            if call.body.get("stream"):
                return self.send(call, events=self._in_200(call) or completion.events())
            return self.send(call, self._in_200(call, stream=False) or completion.json())
        if call.path == "/v1/embeddings" and call.method == "POST":
            if call.bad_json:
                problem = error_object(400, "We could not parse the JSON body of your request.")
            else:
                problem = validate_embeddings_request(call.body)
            if problem is not None:
                return self.reject(call, 400, problem)
            return self.send(call, self._in_200(call, stream=False) or embeddings_answer(call.body))
        if call.path == "/v1/completions" and call.method == "POST":
            return self.completions(call)
        if call.path == "/v1/models" and call.method == "GET":
            return self.send(call, self._in_200(call, stream=False) or model_list(self.models))
        problem = error_object(404, f"Invalid URL ({call.method} {call.path})", code="unknown_url")
        return self.reject(call, 404, problem)

    def completions(self, call: Call) -> Reply:
        """Legacy ``POST /v1/completions`` as vLLM and OpenAI serve it: one choice
        per prompt ("echo: <prompt>"), usage in words; a stream of
        ``text_completion`` chunks ending in ``data: [DONE]`` (usage last only
        with ``stream_options.include_usage``)."""
        body = call.body if isinstance(call.body, dict) else None
        prompt = body.get("prompt") if body else None
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if body is None or not isinstance(body.get("model"), str):
            return self.reject(call, 400, error_object(400, "you must provide a model parameter"))
        if not isinstance(prompts, list) or not prompts:
            return self.reject(call, 400, error_object(400, "'prompt' is a required property"))
        if "messages" in body or "fallbacks" in body:
            name = "messages" if "messages" in body else "fallbacks"
            return self.reject(
                call, 400, error_object(400, f"Unrecognized request argument: {name}")
            )
        texts = ["echo: " + (p if isinstance(p, str) else " ".join(map(str, p))) for p in prompts]
        ident, model = "cmpl-" + call.ident, body["model"]
        used = sum(len(str(p).split()) for p in prompts)
        usage = {"prompt_tokens": used, "completion_tokens": sum(len(t.split()) for t in texts),
                 "total_tokens": used + sum(len(t.split()) for t in texts)}  # fmt: skip
        choices = [{"text": t, "index": i, "logprobs": None, "finish_reason": "stop"}
                   for i, t in enumerate(texts)]  # fmt: skip
        head = {"id": ident, "object": "text_completion", "created": 1, "model": model}
        if not body.get("stream"):
            return self.send(
                call, json.dumps({**head, "choices": choices, "usage": usage}).encode()
            )
        events = [b"data: " + json.dumps({**head, "choices": [{**c, "finish_reason": None}]}).encode() + b"\n\n"
                  for c in choices]  # fmt: skip
        events.append(b"data: " + json.dumps({**head, "choices": [
            {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]}).encode() + b"\n\n")  # fmt: skip
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(b"data: " + json.dumps({**head, "choices": [], "usage": usage}).encode() + b"\n\n")  # fmt: skip
        return self.send(call, events=[*events, b"data: [DONE]\n\n"])

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> Reply:  # fmt: skip
        return self.reject(call, status, error_object(status, message), retry_after=retry_after)

    @staticmethod
    def _in_200(call: Call, stream: bool = True) -> Any:
        """For `error_body_200`: the error object in a 200 (a stream's one event)."""
        if call.kind != "error_body_200":
            return None
        body = json.dumps(error_object(500)).encode()
        return [b"data: " + body + b"\n\n"] if stream else body


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_upstream", description="Run the fake OpenAI upstream."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--latency", default="0", help="before each response, e.g. 50ms")
    parser.add_argument("--chunk-delay", default="0", help="between SSE events, e.g. 10ms")
    parser.add_argument("--reply-words", type=int, default=None)
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)

    loop_name = args.loop
    if loop_name != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found]

            loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            loop_name = "uvloop"
        except ImportError:
            if loop_name == "uvloop":
                raise
            loop_factory, loop_name = asyncio.new_event_loop, "asyncio"
    else:
        loop_factory = asyncio.new_event_loop
    fake = FakeOpenAI(
        reply_words=args.reply_words, latency=args.latency, chunk_delay=args.chunk_delay,
        record=args.record, host=args.host, port=args.port, loop_factory=loop_factory,
    )  # fmt: skip

    def ready(port: int) -> None:
        print(f"fake OpenAI upstream on {fake.base_url} ({loop_name}, pid {os.getpid()})",
              flush=True)  # fmt: skip

    fake.server.run(on_ready=ready)


if __name__ == "__main__":
    main()
