"""The embeddings wire format (``POST /v1/embeddings``), as OpenAI defines it.

``EmbeddingsRequest`` is what a caller sends; ``Embeddings`` is what a
provider's ``embeddings()`` returns: one float vector per input, in input
order, and the input tokens billed. How the vectors are written back
(``float`` lists or ``base64`` little-endian float32) is the surface's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from turnout.wire.chat import MAX_REQUEST_FALLBACKS, ExtraFields

__all__ = ["MAX_DIMENSIONS", "MAX_INPUTS", "Embeddings", "EmbeddingsRequest"]

MAX_INPUTS = 2048
"""The most inputs one request may carry (OpenAI's own limit)."""

MAX_DIMENSIONS = 8192
"""The most ``dimensions`` a request may ask for (today's models stop at 3072)."""

_Text = Annotated[str, Field(min_length=1)]
_Tokens = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class EmbeddingsRequest(BaseModel):
    """An embeddings request: ``input`` is a string, a list of strings, a token
    array or a list of token arrays. Unknown fields are kept and passed on to
    OpenAI-compatible upstreams."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: (
        _Text
        | Annotated[list[_Text], Field(min_length=1)]
        | _Tokens
        | Annotated[list[_Tokens], Field(min_length=1)]
    )
    dimensions: int | None = Field(None, ge=1, le=MAX_DIMENSIONS)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    fallbacks: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=MAX_REQUEST_FALLBACKS
    )

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list: strings, or token arrays."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        return value  # type: ignore[return-value]

    @property
    def texts(self) -> list[str] | None:
        """The inputs when they are strings; None for token arrays."""
        inputs = self.inputs
        return inputs if inputs and isinstance(inputs[0], str) else None


@dataclass(slots=True)
class Embeddings:
    """One upstream's answer: ``vectors[i]`` embeds input ``i``.

    :param vectors: one float vector per input, in input order.
    :param prompt_tokens: input tokens the upstream billed (0 if it said none).
    :param model: the model that answered, as the upstream names it.
    :param extra_fields: the engine's account of the request, once served.
    """

    vectors: list[list[float]]
    prompt_tokens: int
    model: str
    extra_fields: ExtraFields | None = None
