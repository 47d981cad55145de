"""The built-in ``bedrock`` provider: Amazon Bedrock's Converse API.

``POST {endpoint}/model/{modelId}/converse`` and ``/converse-stream`` (and
``/invoke`` for the Titan and Cohere embedding models), where the
endpoint is ``https://bedrock-runtime.{region}.amazonaws.com``, signed with
SigV4 by botocore's signer; streams are AWS event-stream frames decoded by
botocore's ``EventStreamBuffer``. botocore is an optional dependency: this
module imports without it, and a policy using ``type: bedrock`` is refused at
load time with a message saying how to install it. Translation is pure and
lives in ``bedrock_wire``::

    providers:
      bedrock:
        type: bedrock
        options:
          region: us-east-1
          access_key_id: ${AWS_ACCESS_KEY_ID}
          secret_access_key: ${AWS_SECRET_ACCESS_KEY}
          session_token: ${AWS_SESSION_TOKEN}     # optional

Without access keys, an ``api_key`` (a Bedrock API key) is sent as
``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Iterable, Mapping
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from turnout import provider_api as api
from turnout.plugins.providers import bedrock_wire as wire

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.eventstream import EventStreamBuffer, ParserError
except ImportError:  # optional: checked when a bedrock provider is built
    SigV4Auth = AWSRequest = Credentials = EventStreamBuffer = None
    ParserError = Exception

__all__ = ["BedrockOptions", "BedrockProvider", "embedding_family"]

R = TypeVar("R")

_SIGNING_NAME = "bedrock"  # bedrock-runtime signs as "bedrock" (its service model says so)
_EVENT_STREAM = "application/vnd.amazon.eventstream"
# Characters left as they are in the model ID's path segment. The signature
# covers the path exactly as sent, and some transports (aiohttp's yarl)
# rewrite %3A as ":"; sending the canonical form keeps what is signed and
# what arrives the same. "/" (in ARNs) is still encoded.
_PATH_SAFE = ":@!$&'()*+,;="


class BedrockOptions(BaseModel):
    """``options:`` of a ``bedrock`` provider in routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")
    """AWS region: picks the endpoint and signs the request."""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    """For temporary (STS) credentials."""
    max_tokens: int | None = Field(None, ge=1)
    """``inferenceConfig.maxTokens`` for requests that set no limit."""


class BedrockProvider(api.TranslatingProvider):
    """Chat completions served by Bedrock Converse / ConverseStream.

    The target's model is the Bedrock model ID or inference profile
    (``bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0``).
    """

    Options = BedrockOptions
    requires_api_key = False
    price_provider = "aws"
    stream_media_type = _EVENT_STREAM
    stream_end = "messageStop"
    stop_at_end = False

    def __init__(self, settings: api.ProviderSettings) -> None:
        if SigV4Auth is None:
            raise ValueError(
                "the bedrock provider needs botocore (AWS request signing): pip install botocore"
            )
        super().__init__(settings)
        options = self.options
        key_id = options.access_key_id or None
        secret = options.secret_access_key or None
        if bool(key_id) != bool(secret):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        self._secret = secret
        self._signer = (
            SigV4Auth(
                Credentials(key_id, secret, options.session_token or None),
                _SIGNING_NAME,
                options.region,
            )
            if key_id
            else None
        )
        root = settings.base_url or f"https://bedrock-runtime.{options.region}.amazonaws.com"
        self._root = root.rstrip("/") + "/model/"

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        action = "converse-stream" if stream else "converse"
        return f"{self._root}{api.path_segment(call.model, safe=_PATH_SAFE)}/{action}"

    def output_ceiling(self, request: api.ChatRequest, model: str) -> int | None:
        return wire.sent_max_tokens(request, model, default_max_tokens=self.options.max_tokens)

    def request_body(self, call: api.ProviderCall, *, stream: bool) -> Any:
        return wire.to_converse(
            call.request, default_max_tokens=self.options.max_tokens, model=call.model
        )

    def build(self, call: api.ProviderCall, *, stream: bool) -> api.UpstreamRequest:
        """Signed with SigV4 (the signature covers URL and body), or a Bedrock API
        key as ``Authorization: Bearer``."""
        url = self.request_url(call, stream=stream)
        content = pydantic_core.to_json(self.request_body(call, stream=stream))
        return self._signed(call, url, content, self.stream_headers if stream else self.headers)

    def _signed(
        self, call: api.ProviderCall, url: str, content: bytes, base: Mapping[str, str]
    ) -> api.UpstreamRequest:
        headers = {**base, **call.headers}
        if self._signer is not None:
            signed = AWSRequest(
                method="POST", url=url, data=content, headers={"Content-Type": "application/json"}
            )
            self._signer.add_auth(signed)
            headers.update({name.lower(): value for name, value in signed.headers.items()})
        elif call.api_key:
            headers = self.authorize(headers, call.api_key)
        else:
            raise api.ProviderError(
                api.FailureClass.AUTH,
                f"{self.settings.name}: no AWS credentials (options.access_key_id / "
                "secret_access_key) and no api_key",
            )
        return api.UpstreamRequest(url, content, headers, timeout=call.timeout)

    async def embeddings(
        self, call: api.ProviderCall, request: api.EmbeddingsRequest
    ) -> api.Embeddings:
        """InvokeModel with the embedding model's own body: Amazon Titan Text
        Embeddings (one text a call, ``EMBED_CONCURRENCY`` at a time;
        ``dimensions`` as Titan's) or Cohere Embed (at most 96 texts a call;
        ``dimensions`` as ``output_dimension``, ``input_type`` the caller's or
        ``search_document``). Input tokens are Bedrock's
        ``x-amzn-bedrock-input-token-count``. Text only."""
        texts = request.texts
        if texts is None:
            raise api.TranslationError("Bedrock embeds text: send input as strings, not tokens")
        family = embedding_family(call.model)
        url = f"{self._root}{api.path_segment(call.model, safe=_PATH_SAFE)}/invoke"
        if family == "titan":
            bodies = [_titan_body(text, request.dimensions) for text in texts]
            read = _titan_vectors
            step = EMBED_CONCURRENCY
        elif family == "cohere":
            extra = request.model_extra or {}
            input_type = extra.get("input_type", "search_document")
            bodies = [
                _cohere_body(texts[i : i + COHERE_BATCH], input_type, request.dimensions)
                for i in range(0, len(texts), COHERE_BATCH)
            ]
            read = _cohere_vectors
            step = 1
        else:
            raise api.TranslationError(
                f"{call.model!r} is not a Bedrock embedding model turnout knows "
                "(amazon.titan-embed-*, cohere.embed-*)"
            )

        async def one(body: dict[str, Any]) -> tuple[list[list[float]], int]:
            content = pydantic_core.to_json(body)
            reply = await self.send(call, self._signed(call, url, content, self.headers))
            vectors = read(self.json_of(reply.content), body)
            return vectors, _token_count(reply.headers)

        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(bodies), step):
            for got, used in await _all(one(b) for b in bodies[start : start + step]):
                vectors += got
                tokens += used
        return api.Embeddings(vectors, tokens, call.model)

    def _secrets(self, call: api.ProviderCall) -> tuple[str, ...]:
        return tuple(s for s in (self._secret, call.api_key) if s)

    def error_in(self, payload: Any) -> Mapping[str, Any] | None:
        return None  # Converse reports errors by status and frame, never in a 2xx body

    def error_from_answer(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        reason: str,
        call: api.ProviderCall,
    ) -> api.ProviderError:
        return _error_from_response(status, headers, body, self._secrets(call))

    def not_a_stream(
        self, content_type: str, body: bytes, call: api.ProviderCall
    ) -> api.ProviderError:
        return _error_from_response(502, {}, body, self._secrets(call))

    def translate_reply(
        self, call: api.ProviderCall, payload: Any, reply: api.Reply
    ) -> api.ChatResponse:
        try:
            return api.ChatResponse.model_validate(
                wire.from_converse(
                    payload,
                    response_id=_new_id(reply.headers),
                    model=call.model,
                    created=int(time.time()),
                )
            )
        except (ValueError, ValidationError) as exc:
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR,
                f"upstream answered with a body that is not a Converse response ({exc})",
            ) from None

    async def events(
        self, reply: api.StreamReply, call: api.ProviderCall
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """AWS event-stream frames: events by type; an exception frame raises."""
        hidden = self._secrets(call)
        buffer = EventStreamBuffer()
        try:
            async for data in reply.chunks():
                buffer.add_data(data)
                for message in buffer:
                    yield _event(message, hidden)
        except ParserError as exc:
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR, f"upstream sent a malformed event stream ({exc})"
            ) from None

    def translator(
        self, call: api.ProviderCall, reply: api.StreamReply
    ) -> wire.ConverseStreamState:
        return wire.ConverseStreamState(
            response_id=_new_id(reply.headers), model=call.model, created=int(time.time())
        )


EMBED_CONCURRENCY = 8
"""Titan embeds one text a call: at most this many calls at once per request."""
COHERE_BATCH = 96
"""The most texts one Cohere Embed call on Bedrock takes."""


def embedding_family(model: str) -> str | None:
    """``titan`` or ``cohere`` for a Bedrock embedding model ID (an inference
    profile's region prefix allowed), else None."""
    head, _, rest = model.partition(".")
    base = rest if head in ("us", "eu", "apac", "global") and rest else model
    if base.startswith("amazon.titan-embed-text"):
        return "titan"
    if base.startswith("cohere.embed"):
        return "cohere"
    return None


def _titan_body(text: str, dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputText": text}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def _cohere_body(texts: list[str], input_type: Any, dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"texts": texts, "input_type": input_type, "embedding_types": ["float"]}
    if dimensions is not None:
        body["output_dimension"] = dimensions
    return body


def _numbers(vector: Any) -> list[float]:
    if not isinstance(vector, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in vector
    ):
        raise api.ProviderError(
            api.FailureClass.SERVER_ERROR, "Bedrock answered an embedding that is not numbers"
        )
    return vector


def _titan_vectors(payload: Any, body: dict[str, Any]) -> list[list[float]]:
    vector = payload.get("embedding") if isinstance(payload, dict) else None
    return [_numbers(vector)]


def _cohere_vectors(payload: Any, body: dict[str, Any]) -> list[list[float]]:
    embeddings = payload.get("embeddings") if isinstance(payload, dict) else None
    if isinstance(embeddings, dict):
        embeddings = embeddings.get("float")
    count = len(body["texts"])
    if not isinstance(embeddings, list) or len(embeddings) != count:
        raise api.ProviderError(
            api.FailureClass.SERVER_ERROR, f"Bedrock did not answer {count} embeddings"
        )
    return [_numbers(vector) for vector in embeddings]


def _token_count(headers: Mapping[str, str]) -> int:
    value = headers.get("x-amzn-bedrock-input-token-count", "")
    return int(value) if value.isdigit() else 0


async def _all(calls: Iterable[Awaitable[R]]) -> list[R]:
    """Run ``calls`` at once; the first failure is raised once the others are cancelled."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
            task.add_done_callback(_retrieved)


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # read, so a second failure is not logged as never retrieved


def _event(message: Any, hidden: tuple[str, ...]) -> tuple[str, Any]:
    headers: Mapping[str, Any] = message.headers
    kind = headers.get(":message-type")
    if kind == "event":
        event = str(headers.get(":event-type", ""))
        try:
            payload = json.loads(message.payload) if message.payload else {}
        except ValueError:
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR, f"upstream sent a {event} event that is not JSON"
            ) from None
        return event, payload if isinstance(payload, dict) else {}
    if kind == "exception":
        name = str(headers.get(":exception-type", ""))
        text = _message_of(message.payload) or name
    else:  # "error"
        name = str(headers.get(":error-code", ""))
        text = str(headers.get(":error-message", "")) or name
    failure = wire.classify_exception(name, None, text)
    raise api.ProviderError(failure, api.clean(f"{name}: {text}", *hidden), code=name or None)


def _message_of(payload: bytes) -> str:
    try:
        body = json.loads(payload) if payload else {}
    except ValueError:
        return payload.decode("utf-8", "replace")
    if isinstance(body, dict):
        value = body.get("message") or body.get("Message")
        return str(value) if value else ""
    return ""


def _error_from_response(
    status: int, headers: Mapping[str, str], content: bytes, hidden: tuple[str, ...]
) -> api.ProviderError:
    """A ``ProviderError`` for a non-2xx Bedrock answer (rest-json error shape)."""
    name = headers.get("x-amzn-errortype", "")
    message = ""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        name = name or str(body.get("__type") or body.get("code") or "")
        value = body.get("message") or body.get("Message")
        message = str(value) if value else ""
    short = name.split(":", 1)[0].split("#")[-1]
    text = f"{short}: {message}" if short and message else (message or short or f"HTTP {status}")
    return api.ProviderError(
        wire.classify_exception(name, status, message),
        api.clean(text, *hidden),
        status_code=status,
        retry_after=api.parse_retry_after(headers),
        code=short or None,
    )


def _new_id(headers: Mapping[str, str]) -> str:
    request_id = headers.get("x-amzn-requestid")
    return f"chatcmpl-{request_id}" if request_id else f"chatcmpl-{secrets.token_hex(12)}"


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``bedrock`` provider type."""
    register("bedrock", BedrockProvider)
