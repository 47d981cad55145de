"""An example turnout provider plugin: ``type: echo`` answers with the last
user message. Installed, it is found through the ``turnout`` entry point."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict
from turnout import (
    ChatChunk,
    ChatResponse,
    FailureClass,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderSettings,
    hookimpl,
)

__all__ = ["EchoOptions", "EchoProvider"]


class EchoOptions(BaseModel):
    """``options:`` of an ``echo`` provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = "echo: "
    upper: bool = False


class EchoProvider(Provider):
    """Answers with ``prefix`` + the last user message; usage counts words."""

    Options = EchoOptions
    free = True

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.options: EchoOptions = settings.options or EchoOptions()
        self._ids = itertools.count(1)

    def _reply(self, call: ProviderCall) -> str:
        users = [m for m in call.request.messages if m.role == "user"]
        content = users[-1].content if users else None
        if not isinstance(content, str):
            raise ProviderError(FailureClass.BAD_REQUEST, "echo answers text messages only")
        text = self.options.prefix + content
        return text.upper() if self.options.upper else text

    def _usage(self, call: ProviderCall, reply: str) -> dict[str, int]:
        prompt = sum(len(str(m.content or "").split()) for m in call.request.messages)
        completion = len(reply.split())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def chat(self, call: ProviderCall) -> ChatResponse:
        reply = self._reply(call)
        return ChatResponse.model_validate(
            {
                "id": f"echo-{next(self._ids)}",
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

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        reply = self._reply(call)
        base: dict[str, Any] = {"id": f"echo-{next(self._ids)}", "model": call.model}
        words = reply.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            yield ChatChunk.model_validate({**base, "choices": [{"index": 0, "delta": delta}]})
        yield ChatChunk.model_validate(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        )
        yield ChatChunk.model_validate({**base, "choices": [], "usage": self._usage(call, reply)})


@hookimpl
def turnout_register_providers(register: Any) -> None:
    """Register the ``echo`` provider type."""
    register("echo", EchoProvider)
