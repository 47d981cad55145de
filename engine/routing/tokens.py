"""A fast, conservative-enough prompt size estimate for planning.

Planning needs a number before any call is made, in microseconds, for every
vendor; an exact tokenizer per vendor is neither available offline nor fast.
Four characters a token is the usual rule of thumb for English text.
"""

from __future__ import annotations

import json

from turnout.wire.chat import ChatRequest

__all__ = ["estimate_prompt_tokens", "prompt_bound"]

_PER_MESSAGE = 4
_PER_IMAGE = 765  # a high-detail 512px tile set, OpenAI's documented figure


def estimate_prompt_tokens(request: ChatRequest) -> int:
    chars = 0
    tokens = 3
    for message in request.messages:
        tokens += _PER_MESSAGE
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif content:
            for part in content:
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                elif part.get("type") in ("image_url", "image", "input_image"):
                    tokens += _PER_IMAGE
        if message.tool_calls:
            chars += len(json.dumps(message.tool_calls))
    if request.tools:
        chars += len(json.dumps(request.tools))
    return tokens + (chars + 3) // 4


_PER_IMAGE_BOUND = 6_400
"""The most one image can bill among the vendors priced here (a large image in
OpenAI's high-detail tiles, a megapixel image at Anthropic's ~750 px² a token)."""


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def prompt_bound(request: ChatRequest) -> int:
    """A prompt size in tokens that no tokenizer exceeds: the UTF-8 bytes of
    the text (every byte-level BPE token covers at least one byte), plus each
    message's framing and each image's most. Budgets hold this, not the
    estimate, so concurrent requests can never spend past a limit; the
    planner's context-window and routing checks keep the estimate."""
    size = 3
    for message in request.messages:
        size += _PER_MESSAGE
        content = message.content
        if isinstance(content, str):
            size += _size(content)
        elif content:
            for part in content:
                text = part.get("text")
                if isinstance(text, str):
                    size += _size(text)
                elif part.get("type") in ("image_url", "image", "input_image"):
                    size += _PER_IMAGE_BOUND
                else:
                    size += _size(json.dumps(part))
        if message.tool_calls:
            size += _size(json.dumps(message.tool_calls))
        if message.name:
            size += _size(message.name)
    if request.tools:
        size += _size(json.dumps(request.tools))
    return size
