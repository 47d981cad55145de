"""A fast, conservative-enough prompt size estimate for planning.

Planning needs a number before any call is made, in microseconds, for every
vendor; an exact tokenizer per vendor is neither available offline nor fast.
Four characters a token is the usual rule of thumb for English text.
"""

from __future__ import annotations

import json

from turnout.wire.chat import ChatRequest

__all__ = ["estimate_prompt_tokens"]

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
