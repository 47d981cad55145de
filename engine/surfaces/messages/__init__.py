"""Anthropic's Messages API (``/v1/messages``): native to targets that speak it,
translated to chat completions for the others.

api = MessagesAPI(engine)            # or engine.messages
message = await api.create({"model": "smart", "max_tokens": 256,
                            "messages": [{"role": "user", "content": "Hello"}]})
"""

from __future__ import annotations

from turnout.surfaces.messages.service import MessagesAPI, MessageStream, TokenCount
from turnout.surfaces.messages.wire import (
    REQUEST_TYPE,
    MessagesRequest,
    error_body,
    error_status,
    parse_count_tokens,
    parse_messages_request,
)

__all__ = [
    "REQUEST_TYPE",
    "MessageStream",
    "MessagesAPI",
    "MessagesRequest",
    "TokenCount",
    "error_body",
    "error_status",
    "parse_count_tokens",
    "parse_messages_request",
]
