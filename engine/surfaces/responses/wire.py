"""The Responses API's request as turnout validates it, and its id scheme.

Only what translation reads is typed; every other field is kept (``extra``),
so a request that a newer SDK sends with fields this module does not know is
not refused.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["REQUEST_TYPE", "ResponsesRequest", "new_id"]

REQUEST_TYPE = "responses.completion"
"""``extra_fields.request_type`` of an answer from this surface (the seed's name)."""


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``: OpenAI's shape, 48 hex digits."""
    return f"{prefix}_{os.urandom(24).hex()}"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ResponsesRequest(_Open):
    """``POST /v1/responses``. ``input`` may be one string or a list of items."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    stream: bool | None = None
    user: str | None = None
    fallbacks: list[str] | None = None

    @property
    def stored(self) -> bool:
        """OpenAI's default: a response is stored unless ``store: false``."""
        return self.store is not False
