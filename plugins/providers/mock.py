"""The ``mock`` provider: offline and deterministic, for demos, tests and benchmarks.

By default it answers with the text of the last user message, and embeds
each input as a unit vector derived from its hash (16 dimensions, or the
request's ``dimensions``). Its ``options``
script latency, failures and usage, so a policy can show retries and
fallbacks without any network::

    providers:
      flaky:
        type: mock
        options:
          latency: 20ms
          script:                      # used in order, one step per call
            - {fail: overloaded}       # 503-like failure
            - {fail: rate_limited, retry_after: 1s}
            - {reply: "third time lucky"}
          repeat: false                # after the script: default behaviour
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import time
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field
from turnout import provider_api as api

__all__ = ["MockOptions", "MockProvider", "MockStep"]

_STATUS = {
    api.FailureClass.RATE_LIMITED: 429,
    api.FailureClass.OVERLOADED: 503,
    api.FailureClass.SERVER_ERROR: 500,
    api.FailureClass.TIMEOUT: 504,
    api.FailureClass.AUTH: 401,
    api.FailureClass.BAD_REQUEST: 400,
    api.FailureClass.CONTEXT_LENGTH: 400,
    api.FailureClass.CONTENT_FILTER: 400,
    api.FailureClass.NOT_FOUND: 404,
}


class MockStep(BaseModel):
    """One scripted call: fail with a class, or reply (after an optional latency)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail: api.FailureClass | None = None
    retry_after: api.Duration | None = None
    latency: api.Duration | None = None
    reply: str | None = None
    fail_after_chunks: int | None = Field(None, ge=1, description="streams: fail after N chunks")


class MockOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    latency: api.Duration = 0.0
    chunk_delay: api.Duration = 0.0
    reply: str | None = None
    script: list[MockStep] = Field(default_factory=list)
    repeat: bool = False
    usage: dict[str, int] | None = None


def _last_user_text(request: api.ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            content = message.content
            if isinstance(content, str):
                return content
            if content:
                return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return ""


def _words(request: api.ChatRequest) -> int:
    total = 0
    for message in request.messages:
        if isinstance(message.content, str):
            total += len(message.content.split())
    return total


class MockProvider(api.Provider):
    Options = MockOptions
    free = True
    options: MockOptions

    def __init__(self, settings: api.ProviderSettings) -> None:
        super().__init__(settings)
        self._calls = itertools.count()
        self._ids = itertools.count(1)

    def _step(self) -> MockStep | None:
        script = self.options.script
        if not script:
            return None
        n = next(self._calls)
        if n < len(script) or self.options.repeat:
            return script[n % len(script)]
        return None

    async def _scripted(self) -> MockStep | None:
        """The next scripted step, after its latency; raises a scripted failure."""
        step = self._step()
        latency = (
            step.latency if step is not None and step.latency is not None else self.options.latency
        )
        if latency:
            await asyncio.sleep(latency)
        if step is not None and step.fail is not None and step.fail_after_chunks is None:
            raise api.ProviderError(
                step.fail,
                f"mock: scripted {step.fail.value}",
                status_code=_STATUS.get(step.fail),
                retry_after=step.retry_after,
            )
        return step

    async def _prepare(self, call: api.ProviderCall) -> tuple[str, MockStep | None]:
        step = await self._scripted()
        reply = (step.reply if step is not None else None) or self.options.reply
        return (reply if reply is not None else _last_user_text(call.request)), step

    def _usage(self, call: api.ProviderCall, reply: str) -> dict[str, int]:
        if self.options.usage:
            prompt = self.options.usage.get("prompt_tokens", 0)
            completion = self.options.usage.get("completion_tokens", 0)
        else:
            prompt, completion = _words(call.request), len(reply.split())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def chat(self, call: api.ProviderCall) -> api.ChatResponse:
        reply, _ = await self._prepare(call)
        return api.ChatResponse.model_validate(
            {
                "id": f"chatcmpl-mock-{next(self._ids)}",
                "created": int(time.time()),
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": self._usage(call, reply),
            }
        )

    async def stream(self, call: api.ProviderCall) -> AsyncIterator[api.ChatChunk]:
        reply, step = await self._prepare(call)
        ident, created = f"chatcmpl-mock-{next(self._ids)}", int(time.time())

        def chunk(
            delta: api.Delta, finish: str | None = None, usage: api.Usage | None = None
        ) -> api.ChatChunk:
            choices = (
                []
                if usage is not None
                else [api.ChunkChoice(index=0, delta=delta, finish_reason=finish)]
            )
            return api.ChatChunk(
                id=ident, created=created, model=call.model, choices=choices, usage=usage
            )

        words = reply.split(" ")
        for i, word in enumerate(words):
            if step is not None and step.fail is not None and step.fail_after_chunks == i:
                raise api.ProviderError(
                    step.fail,
                    f"mock: scripted {step.fail.value} mid-stream",
                    status_code=_STATUS.get(step.fail),
                )
            if i and self.options.chunk_delay:
                await asyncio.sleep(self.options.chunk_delay)
            text = word if i == 0 else " " + word
            yield chunk(
                api.Delta(role="assistant", content=text) if i == 0 else api.Delta(content=text)
            )
        yield chunk(api.Delta(), finish="stop")
        # always, as providers should: the engine drops it for callers who did not ask
        yield chunk(api.Delta(), usage=api.Usage.model_validate(self._usage(call, reply)))

    async def embeddings(
        self, call: api.ProviderCall, request: api.EmbeddingsRequest
    ) -> api.Embeddings:
        """A unit vector per input, derived from its SHA-256: the same input
        always embeds the same; ``dimensions`` (default 16) sets the length."""
        await self._scripted()
        size = request.dimensions or MOCK_DIMENSIONS
        vectors = [_vector(item, size) for item in request.inputs]
        tokens = sum(len(i.split()) if isinstance(i, str) else len(i) for i in request.inputs)
        return api.Embeddings(vectors, tokens, call.model)


MOCK_DIMENSIONS = 16


def _vector(item: str | list[int], size: int) -> list[float]:
    seed = item.encode() if isinstance(item, str) else ",".join(map(str, item)).encode()
    values = [b / 127.5 - 1.0 for b in hashlib.shake_256(seed).digest(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    register("mock", MockProvider)
