"""Bedrock's InvokeModel embeddings bodies, as the fake sends them.

``POST /model/{modelId}/invoke`` with the model's own JSON body:

- Amazon Titan Text Embeddings (``amazon.titan-embed-text-v2:0``, ``-v1``):
  ``{"inputText", "dimensions" (v2: 256, 512 or 1024), "normalize" (v2),
  "embeddingTypes" (v2)}``, one text a call, answered ``{"embedding": [...],
  "inputTextTokenCount": n}`` (v2 adds ``embeddingsByType`` when asked);
- Cohere Embed (``cohere.embed-english-v3``, ``cohere.embed-multilingual-v3``,
  ``cohere.embed-v4:0``): ``{"texts" (1 to 96), "input_type" (required),
  "truncate", "embedding_types", "output_dimension" (v4 only)}``, answered
  ``{"id", "texts", "embeddings", "response_type"}``: a list of float
  vectors (``embeddings_floats``), or by type when ``embedding_types`` is sent.

Every answer carries ``x-amzn-bedrock-input-token-count``, as Bedrock's do.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.openai_embeddings import embed

__all__ = ["Invalid", "invoke_answer", "is_embedding_model"]

_TITAN = {"amazon.titan-embed-text-v2:0": 1024, "amazon.titan-embed-text-v1": 1536}
_COHERE = {"cohere.embed-english-v3": 1024, "cohere.embed-multilingual-v3": 1024,
           "cohere.embed-v4:0": 1536}  # fmt: skip
_TITAN_V2_KEYS = frozenset({"inputText", "dimensions", "normalize", "embeddingTypes"})
_COHERE_KEYS = frozenset({"texts", "images", "input_type", "truncate", "embedding_types",
                          "output_dimension", "max_tokens"})  # fmt: skip
_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})


class Invalid(ValueError):
    """A ``ValidationException`` (400) with this message."""


def _base(model: str) -> str:
    """The model ID without a cross-region inference profile's ``us.`` / ``eu.`` prefix."""
    head, _, rest = model.partition(".")
    return rest if head in ("us", "eu", "apac", "global") and rest else model


def is_embedding_model(model: str) -> bool:
    return _base(model) in _TITAN or _base(model) in _COHERE


def _titan(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    keys = _TITAN_V2_KEYS if model.endswith("v2:0") else frozenset({"inputText"})
    unknown = sorted(set(body) - keys)
    if unknown:
        raise Invalid(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted")
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        raise Invalid("Malformed input request: #: required key [inputText] not found")
    size = body.get("dimensions", _TITAN[model])
    if size not in (256, 512, 1024) and "dimensions" in body:
        raise Invalid(f"Malformed input request: #/dimensions: {size} is not a valid enum value")
    tokens = len(text.split())
    vector = embed(text, size)
    answer: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": tokens}
    if "float" in (body.get("embeddingTypes") or []):
        answer["embeddingsByType"] = {"float": vector}
    return answer, tokens


def _cohere(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    unknown = sorted(set(body) - _COHERE_KEYS)
    if unknown:
        raise Invalid(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise Invalid("Malformed input request: #/texts: expected a non-empty array of strings")
    if len(texts) > 96:
        raise Invalid("Malformed input request: #/texts: expected maximum item count: 96")
    if body.get("input_type") not in _INPUT_TYPES:
        raise Invalid("Malformed input request: #: required key [input_type] not found")
    size = _COHERE[model]
    if "output_dimension" in body:
        if model != "cohere.embed-v4:0" or body["output_dimension"] not in (256, 512, 1024, 1536):
            raise Invalid("Malformed input request: #: extraneous key [output_dimension]")
        size = body["output_dimension"]
    vectors = [embed(t, size) for t in texts]
    types = body.get("embedding_types")
    answer: dict[str, Any] = {"id": str(uuid.uuid4()), "texts": texts}
    if types is None:
        answer |= {"embeddings": vectors, "response_type": "embeddings_floats"}
    else:
        by_type = {"float": vectors} if "float" in types else {}
        answer |= {"embeddings": by_type, "response_type": "embeddings_by_type"}
    return answer, sum(len(t.split()) for t in texts)


def invoke_answer(model: str, body: Any) -> tuple[dict[str, Any], int]:
    """The answer body and input token count for an embedding model's request."""
    if not isinstance(body, dict):
        raise Invalid("Malformed input request, please reformat your input.")
    base = _base(model)
    return _titan(base, body) if base in _TITAN else _cohere(base, body)
