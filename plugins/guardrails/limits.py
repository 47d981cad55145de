"""``limits``: the largest request a route accepts.

``max_prompt_tokens`` uses the engine's prompt estimate (four characters a
token, plus per-message overhead) — the same figure the planner uses for
context windows. ``max_output_tokens`` refuses a request whose ``max_tokens``
/ ``max_completion_tokens`` asks for more; a request that does not say is
not limited by it (set ``max_tokens`` upstream defaults in the provider).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator
from turnout.plugin_api import ChatRequest, Guardrail, estimate_prompt_tokens

__all__ = ["Limits"]


class LimitsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_prompt_tokens: int | None = Field(None, ge=1)
    max_messages: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> LimitsOptions:
        if (self.max_prompt_tokens, self.max_messages, self.max_output_tokens) == (None,) * 3:
            raise ValueError("limits needs max_prompt_tokens, max_messages or max_output_tokens")
        return self


class Limits(Guardrail):
    Options = LimitsOptions
    default_on = "input"
    default_action = "block"
    actions = ("block", "log")

    def __init__(self, options: LimitsOptions) -> None:
        super().__init__(options)

    def check_request(self, request: ChatRequest) -> str | None:
        o = self.options
        if o.max_messages is not None and len(request.messages) > o.max_messages:
            return f"{len(request.messages)} messages, more than max_messages {o.max_messages}"
        asked = request.output_limit
        if o.max_output_tokens is not None and asked is not None and asked > o.max_output_tokens:
            return f"max_tokens {asked} is more than max_output_tokens {o.max_output_tokens}"
        if o.max_prompt_tokens is not None:
            tokens = estimate_prompt_tokens(request)
            if tokens > o.max_prompt_tokens:
                limit = o.max_prompt_tokens
                return f"about {tokens} prompt tokens, more than max_prompt_tokens {limit}"
        return None
