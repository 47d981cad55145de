"""OpenAI's Responses API (``/v1/responses``), translated to chat completions.

api = ResponsesAPI(engine)
response = await api.create({"model": "smart", "input": "Hello"})
"""

from __future__ import annotations

from turnout.surfaces.responses.service import (
    ResponsesAPI,
    ResponseStream,
    parse_responses_request,
)
from turnout.surfaces.responses.wire import REQUEST_TYPE, ResponsesRequest

__all__ = [
    "REQUEST_TYPE",
    "ResponseStream",
    "ResponsesAPI",
    "ResponsesRequest",
    "parse_responses_request",
]
