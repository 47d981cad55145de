"""Embeddings (``POST /v1/embeddings``), routed by the policy like chat.

An embeddings request is its own kind on the serve path (``EmbeddingsCall``,
an ``Operation``): each attempt calls the provider's ``embeddings()``, so
routes, fallbacks, retries, budgets, rate limits, the cache, metrics and the
request log all apply. What routing, budgets and hooks see is the request's
planning view (``planning_view``): a chat request with one user message per
input string (so input guardrails read, and may redact, every input), the
inputs' sizes for the context-window check, and the fields that decide the
vectors (token arrays, ``dimensions``) for the cache key.

Observers (the request log) and the response cache see the answer as a
chat response with ``object: "list"``, no choices and the vectors in
``data`` (``EmbeddingsCall.outcome_response``); a cache hit comes back the
same way. Budgets hold and bill input tokens only, at the model's input price. Vectors
are floats below the surface; ``encoding_format: base64`` (the openai SDK's
default) is little-endian float32, base64-encoded, as OpenAI writes it.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError
from turnout.contract.provider import Provider, ProviderCall
from turnout.errors import FailureClass, ProviderError, TurnoutError
from turnout.routing.plan import Attempt, Plan
from turnout.run.account import WorstCase
from turnout.run.context import RequestContext
from turnout.run.operation import Operation
from turnout.surfaces.host import ChatHost
from turnout.wire.chat import ChatRequest, ChatResponse, ExtraFields, Usage
from turnout.wire.embeddings import MAX_INPUTS, Embeddings, EmbeddingsRequest

__all__ = [
    "ENVELOPE_OBJECT",
    "REQUEST_TYPE",
    "EmbeddingsAPI",
    "EmbeddingsCall",
    "embeddings_object",
    "encode_base64",
    "parse_embeddings_request",
    "planning_view",
]

REQUEST_TYPE = "embedding"

ENVELOPE_OBJECT = "list"
"""``object`` of the response observers and the cache get for an embeddings
answer (OpenAI's own name for an embeddings answer)."""

VIEW_FIELD = "embeddings"
"""The planning view's field holding what decides the vectors besides the texts."""

_INPUT_SHAPES = (
    "input must be a non-empty string, a list of non-empty strings, a token array "
    "(a list of integers) or a list of token arrays"
)


def parse_embeddings_request(body: bytes | str | Mapping[str, Any]) -> EmbeddingsRequest:
    """Validate an embeddings body; TurnoutError 400 naming the field otherwise."""
    try:
        if isinstance(body, bytes | str):
            request = EmbeddingsRequest.model_validate_json(body)
        else:
            request = EmbeddingsRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise TurnoutError(
                f"the body is not valid JSON: {first['msg']}", code="invalid_json"
            ) from None
        where = str(first["loc"][0]) if first["loc"] else "body"
        if where == "input" and first["type"] != "missing":
            message = f"invalid request: {_INPUT_SHAPES}"
        else:
            detail = ".".join(str(p) for p in first["loc"]) or "body"
            message = f"invalid request: {detail}: {first['msg']}"
        raise TurnoutError(message, code="invalid_request", param=where) from None
    count = len(request.inputs)
    if count > MAX_INPUTS:
        raise TurnoutError(
            f"input has {count} items; send at most {MAX_INPUTS} per request",
            code="invalid_request",
            param="input",
        )
    return request


def _sizes(request: EmbeddingsRequest) -> list[int]:
    """Each input's size in tokens: exact for token arrays, ≈4 characters a token."""
    return [
        len(item) if isinstance(item, list) else (len(item) + 3) // 4 for item in request.inputs
    ]


def planning_view(request: EmbeddingsRequest) -> ChatRequest:
    """The chat request routing, budgets and hooks see for ``request``."""
    texts = request.texts
    decides: dict[str, Any] = {}
    if texts is None:
        decides["tokens"] = request.inputs
    if request.dimensions is not None:
        decides["dimensions"] = request.dimensions
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": "user", "content": text} for text in texts or ("",)],
        "temperature": 0,  # embeddings are deterministic: the cache may keep them
        VIEW_FIELD: decides,
    }
    for name in ("user", "metadata", "fallbacks"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    extra = request.model_extra
    if extra and "cache" in extra:  # the per-request cache control, read by the cache
        body["cache"] = extra["cache"]
    return ChatRequest.model_validate(body)


def _text(content: Any) -> str:
    """A planning message's text (a hook may have written content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def encode_base64(vector: list[float]) -> str:
    """``vector`` as OpenAI's base64: little-endian float32."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


class EmbeddingsCall(Operation[Embeddings]):
    """The embeddings kind of request: what each attempt calls, and how it bills.

    :param request: the caller's validated request.
    :param view: its planning view (``planning_view``).
    :param total_tokens: the estimated input tokens of all inputs together.
    """

    request_type = REQUEST_TYPE

    def __init__(self, request: EmbeddingsRequest, view: ChatRequest, total_tokens: int) -> None:
        self.request = request
        self.view = view
        self.total_tokens = total_tokens

    def _upstream_request(self, call: ProviderCall) -> EmbeddingsRequest:
        """The request to send: the caller's, with the texts as the pre-request
        hooks left them (a guardrail's redactions are what goes upstream)."""
        if call.request is self.view or self.request.texts is None:
            return self.request
        texts = [_text(message.content) for message in call.request.messages]
        if len(texts) != len(self.request.inputs):
            raise TurnoutError(
                "a pre-request hook changed how many inputs an embeddings request has",
                status_code=500,
                type="api_error",
                code="plugin_error",
            )
        if texts == self.request.texts:
            return self.request
        return self.request.model_copy(update={"input": texts})

    async def call(self, provider: Provider, call: ProviderCall) -> Embeddings:
        request = self._upstream_request(call)
        answer = await provider.embeddings(call, request)
        wanted = len(request.inputs)
        if len(answer.vectors) != wanted:
            raise ProviderError(
                FailureClass.SERVER_ERROR,
                f"the upstream answered {len(answer.vectors)} embeddings for {wanted} inputs",
            )
        size = request.dimensions
        if size is not None and any(len(vector) != size for vector in answer.vectors):
            raise ProviderError(
                FailureClass.SERVER_ERROR,
                f"the upstream did not answer {size}-dimension embeddings as asked",
            )
        return answer

    def usage(self, result: Embeddings) -> Usage:
        tokens = result.prompt_tokens
        return Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)

    def worst_case(self, attempt: Attempt, plan: Plan) -> WorstCase:
        price = attempt.target.info.input_per_mtok
        cost = None if price is None else self.total_tokens * price / 1e6
        return WorstCase(self.total_tokens, cost)

    async def accept(
        self,
        ctx: RequestContext,
        attempt: Attempt,
        result: Embeddings,
        fields: ExtraFields,
        hook: Any,
    ) -> Embeddings:
        fields.model_params = (
            {"dimensions": self.request.dimensions} if self.request.dimensions else {}
        )
        fields.cache = ctx.cache
        result.extra_fields = fields
        redactor = ctx.table.redactor
        if redactor:  # the one text an upstream sends back: never a configured secret
            result.model = redactor.text(result.model)
        return result

    def outcome_response(self, result: Embeddings) -> ChatResponse:
        """The answer as observers and the cache see it: an ``ENVELOPE_OBJECT``
        response with no choices, the vectors in ``data``."""
        fields = result.extra_fields
        return ChatResponse.model_construct(  # every value is already valid: no validation
            id="embd-" + ((fields.request_id if fields is not None else None) or ""),
            object=ENVELOPE_OBJECT,
            model=result.model,
            choices=[],
            usage=self.usage(result),
            extra_fields=fields,
            data=result.vectors,
        )

    def short_circuit(self, response: ChatResponse) -> Embeddings:
        """A cache hit: the envelope ``outcome_response`` gave, stored earlier."""
        extra = response.model_extra or {}
        vectors = extra.get("data")
        if (
            response.object != ENVELOPE_OBJECT
            or not isinstance(vectors, list)
            or len(vectors) != len(self.request.inputs)
        ):
            raise TurnoutError(
                "a pre-request hook answered an embeddings request with something else",
                status_code=500,
                type="api_error",
                code="plugin_error",
            )
        tokens = response.usage.prompt_tokens if response.usage is not None else 0
        return Embeddings(vectors, tokens, response.model, response.extra_fields)


def embeddings_object(request: EmbeddingsRequest, answer: Embeddings) -> dict[str, Any]:
    """The OpenAI ``list`` of ``embedding`` objects for ``answer``."""
    encode: Callable[[list[float]], Any] = (
        encode_base64 if request.encoding_format == "base64" else _same
    )
    fields = answer.extra_fields
    extra = fields.model_dump(mode="json") if fields is not None else {}
    extra["request_type"] = REQUEST_TYPE
    tokens = answer.prompt_tokens
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(vector)}
            for i, vector in enumerate(answer.vectors)
        ],
        "model": answer.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "extra_fields": extra,
    }


def _same(vector: list[float]) -> list[float]:
    return vector


class EmbeddingsAPI:
    """Embeddings over ``engine``'s serve path."""

    def __init__(self, engine: ChatHost) -> None:
        self.engine = engine

    async def create(
        self,
        body: EmbeddingsRequest | Mapping[str, Any] | bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        respond: Callable[[dict[str, Any], ExtraFields | None], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Embed ``body``'s inputs; the OpenAI answer as a dict.

        :param respond: awaited with the answer (and its ``extra_fields`` as the
            model) before the request's observers (request log, metrics) run,
            as ``Engine.chat``'s ``respond``.
        """
        request = body if isinstance(body, EmbeddingsRequest) else parse_embeddings_request(body)
        sizes = _sizes(request)
        view = planning_view(request)
        op = EmbeddingsCall(request, view, sum(sizes))

        rendered: list[dict[str, Any]] = []

        async def deliver(answer: Embeddings) -> None:
            rendered.append(embeddings_object(request, answer))
            if respond is not None:
                await respond(rendered[0], answer.extra_fields)

        answer = await self.engine.serve(
            view,
            op,
            headers=headers,
            request_id=request_id,
            deliver=deliver if respond is not None else None,
            prompt_tokens=max(sizes),
        )
        return rendered[0] if rendered else embeddings_object(request, answer)
