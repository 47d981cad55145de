"""The Gemini API's embeddings wire format, as the fake sends it.

``POST /v1beta/models/{model}:batchEmbedContents`` takes ``{"requests":
[EmbedContentRequest, ...]}`` (at most 100) and answers ``{"embeddings":
[{"values": [...]}, ...]}`` in request order; ``:embedContent`` takes one
``EmbedContentRequest`` and answers ``{"embedding": {"values": [...]}}``. An
``EmbedContentRequest`` is ``{model, content: {parts: [{text}]}, taskType,
title, outputDimensionality}``; in a batch each ``model`` must be the URL's
``models/{model}``. Neither answer reports token usage, as Google's do not.
Only embedding models embed (``gemini-embedding-001``: 3072 dimensions,
``text-embedding-004``: 768); a chat model is a 404 naming the method.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.gemini_wire import Invalid
from tests.fakes.openai_embeddings import embed

__all__ = ["EMBEDDING_MODELS", "MAX_BATCH", "embed_answer"]

EMBEDDING_MODELS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
MAX_BATCH = 100
_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
_TASKS = frozenset({
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
    "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
})  # fmt: skip


def _one(request: Any, model: str, where: str, batched: bool) -> list[float]:
    if not isinstance(request, dict):
        raise Invalid(f"Invalid value at '{where}': expected an object")
    unknown = sorted(set(request) - _FIELDS)
    if unknown:
        raise Invalid(f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at '{where}'")
    if batched and request.get("model") != f"models/{model}":
        raise Invalid(
            f"* BatchEmbedContentsRequest.{where}.model: the model in the request "
            f"({request.get('model')}) does not match the model in the URL (models/{model})"
        )
    content = request.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* {where}.content.parts: contents.parts must not be empty.")
    if not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts):
        raise Invalid(f"* {where}.content.parts: only text parts can be embedded")
    text = " ".join(p["text"] for p in parts)
    if not text.strip():
        raise Invalid(f"* {where}.content: the text must not be empty")
    task = request.get("taskType")
    if task is not None and task not in _TASKS:
        raise Invalid(f"Invalid value at '{where}.task_type' ({task})")
    native = EMBEDDING_MODELS[model]
    size = request.get("outputDimensionality", native)
    if not isinstance(size, int) or not 1 <= size <= native:
        raise Invalid(f"* {where}.output_dimensionality: must be between 1 and {native}")
    return embed(text, size)


def embed_answer(body: Any, model: str, action: str) -> dict[str, Any]:
    """The 200 body for ``action`` (``embedContent`` or ``batchEmbedContents``);
    raises ``Invalid`` for what Google would refuse with a 400."""
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Expected an object.")
    if action == "embedContent":
        return {"embedding": {"values": _one(body, model, "request", batched=False)}}
    if set(body) != {"requests"}:
        raise Invalid('Invalid JSON payload received. Only "requests" is known here.')
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        raise Invalid("* BatchEmbedContentsRequest.requests: must not be empty")
    if len(requests) > MAX_BATCH:
        raise Invalid(
            f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in "
            "one batch"
        )
    values = [_one(r, model, f"requests[{i}]", batched=True) for i, r in enumerate(requests)]
    return {"embeddings": [{"values": v} for v in values]}
