"""The built-in ``bedrock`` provider: Amazon Bedrock's Converse API.

``POST {endpoint}/model/{modelId}/converse`` and ``/converse-stream``, where the
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

import json
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2 as httpx
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from turnout.contract.hookspecs import hookimpl
from turnout.contract.provider import Provider, ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import _http
from turnout.plugins.providers import bedrock_wire as wire
from turnout.wire.chat import ChatChunk, ChatResponse, ExtraFields

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.eventstream import EventStreamBuffer, ParserError
except ImportError:  # optional: checked when a bedrock provider is built
    SigV4Auth = AWSRequest = Credentials = EventStreamBuffer = None
    ParserError = Exception

__all__ = ["BedrockOptions", "BedrockProvider"]

_SIGNING_NAME = "bedrock"  # bedrock-runtime signs as "bedrock" (its service model says so)
_EVENT_STREAM = "application/vnd.amazon.eventstream"
_MAX_MESSAGE = 500
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


class BedrockProvider(Provider):
    """Chat completions served by Bedrock Converse / ConverseStream.

    The target's model is the Bedrock model ID or inference profile
    (``bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0``).
    """

    Options = BedrockOptions
    requires_api_key = False
    price_provider = "aws"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        if SigV4Auth is None:
            raise ValueError(
                "the bedrock provider needs botocore (AWS request signing): pip install botocore"
            )
        options = settings.options
        if not isinstance(options, BedrockOptions):
            options = BedrockOptions.model_validate(options or {})
        self._options = options
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
        self._extra = dict(settings.headers)
        self._raw_response = settings.raw_response

    def _url(self, model: str, stream: bool) -> str:
        action = "converse-stream" if stream else "converse"
        return f"{self._root}{urllib.parse.quote(model, safe=_PATH_SAFE)}/{action}"

    def _request(self, call: ProviderCall, *, stream: bool) -> tuple[str, bytes, dict[str, str]]:
        try:
            body = wire.to_converse(
                call.request, default_max_tokens=self._options.max_tokens, model=call.model
            )
        except wire.TranslationError as exc:
            raise ProviderError(FailureClass.BAD_REQUEST, str(exc)) from None
        content = pydantic_core.to_json(body)
        url = self._url(call.model, stream)
        headers = {**self._extra, "content-type": "application/json"}
        if stream:
            headers["accept"] = _EVENT_STREAM
        if self._signer is not None:
            signed = AWSRequest(
                method="POST", url=url, data=content, headers={"Content-Type": "application/json"}
            )
            self._signer.add_auth(signed)
            headers.update({name.lower(): value for name, value in signed.headers.items()})
        elif call.api_key:
            headers["authorization"] = f"Bearer {call.api_key}"
        else:
            raise ProviderError(
                FailureClass.AUTH,
                f"{self.settings.name}: no AWS credentials (options.access_key_id / "
                "secret_access_key) and no api_key",
            )
        return url, content, headers

    def _secrets(self, call: ProviderCall) -> tuple[str, ...]:
        return tuple(s for s in (self._secret, call.api_key) if s)

    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one Converse request and translate its answer."""
        url, content, headers = self._request(call, stream=False)
        hidden = self._secrets(call)
        try:
            response = await call.client.post(
                url, content=content, headers=headers, timeout=_http.attempt_timeout(call)
            )
        except httpx.RequestError as exc:
            raise _http.error_from_transport(exc, secret=self._secret) from exc
        if not response.is_success:
            raise _error_from_response(
                response.status_code, response.headers, response.content, hidden
            )
        try:
            body = json.loads(response.content)
            if not isinstance(body, dict):
                raise ValueError("not an object")
            result = ChatResponse.model_validate(
                wire.from_converse(
                    body,
                    response_id=_new_id(response.headers),
                    model=call.model,
                    created=int(time.time()),
                )
            )
        except (ValueError, ValidationError) as exc:
            raise ProviderError(
                FailureClass.SERVER_ERROR,
                f"upstream answered with a body that is not a Converse response ({exc})",
            ) from None
        if self._raw_response:
            result.extra_fields = ExtraFields(raw_response=body)
        return result

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one ConverseStream request and yield OpenAI chunks as events arrive.

        The stream must reach ``messageStop``; a body that ends before it, a
        frame that fails its CRC, or an exception event raises ``ProviderError``.
        """
        url, content, headers = self._request(call, stream=True)
        hidden = self._secrets(call)
        try:
            async with call.client.stream(
                "POST", url, content=content, headers=headers, timeout=_http.attempt_timeout(call)
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise _error_from_response(
                        response.status_code, response.headers, response.content, hidden
                    )
                kind = response.headers.get("content-type", "")
                if not kind.lower().startswith(_EVENT_STREAM):
                    await response.aread()
                    raise _error_from_response(502, response.headers, response.content, hidden)
                state = wire.ConverseStreamState(
                    response_id=_new_id(response.headers),
                    model=call.model,
                    created=int(time.time()),
                )
                buffer = EventStreamBuffer()
                async for data in response.aiter_bytes():
                    buffer.add_data(data)
                    for message in buffer:
                        for chunk in _translate(message, state, hidden):
                            yield ChatChunk.model_validate(chunk)
                if not state.finished:
                    raise ProviderError(FailureClass.CONNECTION, "stream ended before messageStop")
        except ParserError as exc:
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"upstream sent a malformed event stream ({exc})"
            ) from None
        except httpx.RequestError as exc:
            raise _http.error_from_transport(exc, secret=self._secret) from exc


def _translate(
    message: Any, state: wire.ConverseStreamState, hidden: tuple[str, ...]
) -> list[dict[str, Any]]:
    headers: Mapping[str, Any] = message.headers
    kind = headers.get(":message-type")
    if kind == "event":
        event = str(headers.get(":event-type", ""))
        try:
            payload = json.loads(message.payload) if message.payload else {}
        except ValueError:
            raise ProviderError(
                FailureClass.SERVER_ERROR, f"upstream sent a {event} event that is not JSON"
            ) from None
        return state.feed(event, payload if isinstance(payload, dict) else {})
    if kind == "exception":
        name = str(headers.get(":exception-type", ""))
        text = _message_of(message.payload) or name
    else:  # "error"
        name = str(headers.get(":error-code", ""))
        text = str(headers.get(":error-message", "")) or name
    failure = wire.classify_exception(name, None, text)
    raise ProviderError(failure, _clean(f"{name}: {text}", hidden), code=name or None)


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
) -> ProviderError:
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
    return ProviderError(
        wire.classify_exception(name, status, message),
        _clean(text, hidden),
        status_code=status,
        retry_after=_http.parse_retry_after(headers),
        code=short or None,
    )


def _clean(message: str, hidden: tuple[str, ...]) -> str:
    for secret in hidden:
        if len(secret) >= 8:
            message = message.replace(secret, "***")
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return message


def _new_id(headers: Mapping[str, str]) -> str:
    request_id = headers.get("x-amzn-requestid")
    return f"chatcmpl-{request_id}" if request_id else f"chatcmpl-{secrets.token_hex(12)}"


@hookimpl
def turnout_register_providers(register: Any) -> None:
    """Register the ``bedrock`` provider type."""
    register("bedrock", BedrockProvider)
