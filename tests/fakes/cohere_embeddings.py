"""Cohere's v2 embed wire format (``POST /v2/embed``), as the fake sends it.

A request is ``{model, input_type, texts, embedding_types, output_dimension,
truncate, max_tokens}``: ``input_type`` is required for the v3+ models,
``texts`` holds 1 to 96 strings, ``embedding_types`` lists the types wanted
(the fake writes ``float`` vectors only, and only when asked), ``output_dimension`` is 256, 512, 1024 or 1536 and
only for ``embed-v4.0``. The answer is ``{"id", "embeddings": {"float":
[[...]]}, "texts", "meta": {"api_version", "billed_units": {"input_tokens"}},
"response_type": "embeddings_by_type"}``.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.openai_embeddings import embed

__all__ = ["EMBED_MODELS", "MAX_TEXTS", "Invalid", "embed_answer"]

EMBED_MODELS = {
    "embed-v4.0": 1536,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
}
MAX_TEXTS = 96
_FIELDS = frozenset({
    "model", "input_type", "texts", "images", "inputs", "embedding_types", "output_dimension",
    "truncate", "max_tokens",
})  # fmt: skip
_INPUT_TYPES = frozenset(
    {"search_document", "search_query", "classification", "clustering", "image"}
)
_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary", "base64"})


class Invalid(ValueError):
    """What Cohere answers with a 400 ``invalid request: ...``."""


def embed_answer(body: Any) -> dict[str, Any]:
    """The 200 body for a valid request; raises ``Invalid`` otherwise."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise Invalid(f"unknown field: parameter {unknown[0]} is not a valid field")
    model = body.get("model")
    if not isinstance(model, str):
        raise Invalid("model must be a string")
    if body.get("input_type") not in _INPUT_TYPES:
        raise Invalid(
            "input_type is required for embed models v3 and higher: one of "
            + ", ".join(sorted(_INPUT_TYPES))
        )
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise Invalid("texts must be a non-empty list of strings")
    if len(texts) > MAX_TEXTS:
        raise Invalid(f"too many texts: at most {MAX_TEXTS} texts can be embedded at once")
    types = body.get("embedding_types", ["float"])
    if not isinstance(types, list) or not types or not set(types) <= _TYPES:
        raise Invalid("embedding_types must list float, int8, uint8, binary, ubinary or base64")
    size = EMBED_MODELS.get(model)
    if size is None:
        raise LookupError(model)
    dimension = body.get("output_dimension")
    if dimension is not None:
        if model != "embed-v4.0" or dimension not in (256, 512, 1024, 1536):
            raise Invalid(
                "output_dimension is only supported for embed-v4.0 and newer, "
                "as 256, 512, 1024 or 1536"
            )
        size = dimension
    tokens = sum(len(t.split()) for t in texts)
    embeddings: dict[str, Any] = {}
    if "float" in types:
        embeddings["float"] = [embed(t, size) for t in texts]
    return {
        "id": str(uuid.uuid4()),
        "embeddings": embeddings,
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
        "response_type": "embeddings_by_type",
    }
