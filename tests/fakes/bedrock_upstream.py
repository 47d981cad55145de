"""A fake Amazon Bedrock runtime (Converse / ConverseStream) on loopback.

Stands on the fakes' shared base (``tests.fakes.upstream``: the loopback server,
the script and ``x-fake-fault`` handling) and speaks Bedrock's wire format as the bedrock-runtime service model
and API reference define it:

- ``POST /model/{modelId}/converse`` answers a Converse JSON body;
  ``/converse-stream`` answers ``application/vnd.amazon.eventstream`` frames
  (prelude, headers, payload, CRC32s; encoded here, decoded by botocore in the
  provider) carrying ``messageStart``, ``contentBlockStart/Delta/Stop``,
  ``messageStop`` and ``metadata`` events, or exception events;
- authentication: SigV4 (``AWS4-HMAC-SHA256 Credential=.../bedrock/aws4_request,
  SignedHeaders=..., Signature=...``), the signature recomputed with botocore
  from the test credentials, or ``Authorization: Bearer`` with a Bedrock API key;
- ``POST /model/{modelId}/invoke`` for the Titan and Cohere embedding models
  (``tests.fakes.bedrock_embeddings``);
- errors: rest-json, ``x-amzn-ErrorType`` header and ``{"message": ...}`` body.

It REJECTS what Bedrock rejects: a missing or wrong signature, a conversation
that does not start with a user turn or does not alternate, blank text,
tool blocks without ``toolConfig``, a ``toolResult`` without its ``toolUse``,
unknown request keys, bad inference settings, bad images.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import struct
import urllib.parse
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Unpack

from tests.fakes.bedrock_embeddings import Invalid, invoke_answer, is_embedding_model
from tests.fakes.faults import Fault
from tests.fakes.server import Reply
from tests.fakes.upstream import Call, FakeUpstream, Options

__all__ = ["AwsCredentials", "FakeBedrock", "StreamException", "encode_event"]

_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_DEFAULT_ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The specified model ID was not found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "An internal server error occurred. Retry your request."),
    503: ("ServiceUnavailableException", "The service is temporarily unable to handle the request."),
}  # fmt: skip
_REQUEST_KEYS = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
    "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
    "requestMetadata", "performanceConfig",
}  # fmt: skip
_INFERENCE_KEYS = {"maxTokens", "temperature", "topP", "stopSequences"}
_BLOCK_KEYS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
               "cachePoint", "reasoningContent"}  # fmt: skip
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<action>converse|converse-stream|invoke)$")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


# ---------------------------------------------------------------- event stream


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and headers length, CRC32),
    string-typed headers, payload, CRC32 of everything before it."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", 7, len(raw_value)) + raw_value  # 7: string
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    head = prelude + struct.pack("!I", zlib.crc32(prelude))
    message = head + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def _event(event_type: str, body: dict[str, Any]) -> bytes:
    # Bedrock pads payloads with a random "p" field (hides sizes); clients ignore it.
    payload = json.dumps({**body, "p": secrets.token_hex(3)}).encode()
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_event(headers, payload)


@dataclass(frozen=True)
class StreamException:
    """A script item: a stream that starts, then ends with this exception event
    (``name`` in the stream's lower-camel form, e.g. ``throttlingException``)."""

    name: str
    message: str = "Too many requests, please wait before trying again."


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


# ---------------------------------------------------------------- upstream


class _Rejection(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


def _validation(message: str) -> _Rejection:
    return _Rejection(400, "ValidationException", message)


def stream_events(reply: dict[str, Any]) -> list[bytes]:
    """The ConverseStream frames that carry a Converse ``reply``."""
    frames = [_event("messageStart", {"role": "assistant"})]
    for index, block in enumerate(reply["output"]["message"]["content"]):
        if "text" in block:
            words = block["text"].split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                frames.append(
                    _event(
                        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}
                    )
                )
        else:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            frames.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            arguments = json.dumps(use["input"])
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                frames.append(
                    _event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}},
                    )
                )
        frames.append(_event("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(_event("messageStop", {"stopReason": reply["stopReason"]}))
    frames.append(_event("metadata", {"usage": reply["usage"], "metrics": reply["metrics"]}))
    return frames


def _signature(
    method: str, target: str, headers: dict[str, str], raw: bytes, signed: list[str],
    credentials: AwsCredentials, region: str,
) -> str:  # fmt: skip
    """The SigV4 signature botocore computes for this request and these credentials."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{target}",
        data=raw,
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(
        Credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ),
        "bedrock",
        region,
    )
    return str(
        auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    )


# ---------------------------------------------------------------- validation


def validate_converse(body: dict[str, Any]) -> None:
    """Raise ``_Rejection`` for a body Converse would refuse (with Bedrock's wording)."""
    for key in body:
        if key not in _REQUEST_KEYS:
            raise _validation(f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again.")  # fmt: skip
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _validation("The messages field is required and must not be empty.")
    uses_tools = False
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _validation(f"1 validation error detected: Value '{role}' at 'messages.{i + 1}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]")  # fmt: skip
        if i == 0 and role != "user":
            raise _validation("A conversation must start with a user message. Try again with a conversation that starts with a user message.")  # fmt: skip
        if i > 0 and messages[i - 1].get("role") == role:
            raise _validation("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.")  # fmt: skip
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _validation(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again.")  # fmt: skip
        uses: set[str] = set()
        for j, block in enumerate(content):
            keys = [k for k in block if k in _BLOCK_KEYS]
            if len(keys) != 1 or len(block) != 1:
                raise _validation(f"The ContentBlock object at messages.{i}.content.{j} must set exactly one of its members.")  # fmt: skip
            kind = keys[0]
            if kind == "text" and not str(block["text"]).strip():
                raise _validation(f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again.")  # fmt: skip
            if kind == "image":
                _validate_image(block["image"], f"messages.{i}.content.{j}")
            if kind == "toolUse":
                uses_tools = True
                if role != "assistant":
                    raise _validation(f"toolUse blocks are only allowed in assistant messages (messages.{i}.content.{j}).")  # fmt: skip
                use = block["toolUse"]
                if (
                    not use.get("toolUseId")
                    or not use.get("name")
                    or not isinstance(use.get("input"), dict)
                ):
                    raise _validation(f"The toolUse block at messages.{i}.content.{j} needs toolUseId, name and an input object.")  # fmt: skip
                uses.add(use["toolUseId"])
            if kind == "toolResult":
                uses_tools = True
                result = block["toolResult"]
                if result.get("toolUseId") not in previous_uses:
                    raise _validation(f"The toolUseId {result.get('toolUseId')!r} in messages.{i}.content.{j} does not match any toolUse block in the previous turn.")  # fmt: skip
                if not isinstance(result.get("content"), list) or not result["content"]:
                    raise _validation(f"The toolResult block at messages.{i}.content.{j} needs content.")  # fmt: skip
        previous_uses = uses
    for k, block in enumerate(body.get("system") or []):
        if not isinstance(block, dict) or not str(block.get("text", "")).strip():
            raise _validation(f"The text field in the SystemContentBlock object at system.{k} is blank.")  # fmt: skip
    inference = body.get("inferenceConfig") or {}
    for key, value in inference.items():
        if key not in _INFERENCE_KEYS:
            raise _validation(f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again.")  # fmt: skip
        if key == "maxTokens" and (not isinstance(value, int) or value < 1):
            raise _validation("The maximum tokens you requested must be at least 1.")
        if key == "temperature" and not 0 <= value <= 1:
            raise _validation("1 validation error detected: Value at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1")  # fmt: skip
        if key == "topP" and not 0 <= value <= 1:
            raise _validation("1 validation error detected: Value at 'inferenceConfig.topP' failed to satisfy constraint: Member must have value less than or equal to 1")  # fmt: skip
        if key == "stopSequences" and not (
            isinstance(value, list) and all(isinstance(s, str) and s for s in value)
        ):
            raise _validation("stopSequences must be a list of non-empty strings.")
    config = body.get("toolConfig")
    if uses_tools and config is None:
        raise _validation("The toolConfig field must be defined when using toolUse and toolResult content blocks.")  # fmt: skip
    if config is not None:
        tools = config.get("tools")
        if not isinstance(tools, list) or not tools:
            raise _validation("The tools field in toolConfig must not be empty.")
        for tool in tools:
            spec = tool.get("toolSpec") if isinstance(tool, dict) else None
            if (
                not isinstance(spec, dict)
                or not spec.get("name")
                or "json" not in (spec.get("inputSchema") or {})
            ):
                raise _validation("Each tool needs a toolSpec with a name and inputSchema.json.")
        choice = config.get("toolChoice")
        if choice is not None and (
            len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool")
        ):
            raise _validation("toolChoice must set exactly one of auto, any, tool.")


def _validate_image(image: dict[str, Any], where: str) -> None:
    if image.get("format") not in ("png", "jpeg", "gif", "webp"):
        raise _validation(f"The image format at {where} must be one of png, jpeg, gif, webp.")
    source = image.get("source") or {}
    if "bytes" in source:
        try:
            base64.b64decode(source["bytes"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _validation(f"The image bytes at {where} are not valid base64.") from None
    elif "s3Location" not in source:
        raise _validation(f"The image source at {where} must set bytes or s3Location.")


# ---------------------------------------------------------------- public API


class FakeBedrock(FakeUpstream):
    """A fake bedrock-runtime endpoint on its own thread; ``base_url`` is its root.

    :param region: the region requests must be signed for.
    :param credentials: accepted SigV4 credentials.
    :param api_keys: accepted Bedrock API keys (``Authorization: Bearer``).

    and the options every fake takes (`tests.fakes.upstream.Options`).
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        credentials: Iterable[AwsCredentials] = (),
        api_keys: Iterable[str] = (),
        **options: Unpack[Options],
    ) -> None:
        super().__init__(**options)
        self.region = region
        self.credentials = {c.access_key_id: c for c in credentials}
        self.api_keys = frozenset(api_keys)
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self._tokens: dict[str, int] = {}  # an invoke's input tokens, for its headers

    def script(self, *faults: Fault | StreamException | str) -> None:
        """Queue behaviours, FIFO: a ``Fault``, its text form, or a ``StreamException``."""
        self._script.extend(Fault.parse(f) if isinstance(f, str) else f for f in faults)

    def cache_tokens(self, read: int = 0, write: int = 0) -> None:
        """Report these cache read/write tokens in every answer's usage."""
        self.cache_read_tokens, self.cache_write_tokens = read, write

    def reset(self) -> None:
        super().reset()
        self.cache_tokens()

    # -- answering

    def answer(self, call: Call) -> Reply:
        try:
            match = _PATH.match(call.path)
            if call.method != "POST" or match is None:
                raise _Rejection(404, "UnknownOperationException", "Not Found")
            self._authenticate(call)
            early = self.early_fault(call)  # after authentication, as AWS answers
            if early is not None:
                return early
            if not isinstance(call.body, dict):
                raise _Rejection(400, "SerializationException", "Could not parse the body.")
            if match["action"] == "invoke":
                return self._invoke(call, urllib.parse.unquote(match["model"]))
            validate_converse(call.body)
        except _Rejection as rejection:
            return self._aws_error(call, rejection.status, rejection.name, rejection.message)
        reply = self._reply(call.body)
        if match["action"] == "converse":
            data = json.dumps(reply).encode()
            cut = "truncated_stream" if call.kind == "malformed_json" else None
            return self.send(call, data, kind=cut)
        return self._stream(call, stream_events(reply))

    def _stream(self, call: Call, frames: list[bytes]) -> Reply:
        kind = None
        if isinstance(call.fault, StreamException):
            payload = json.dumps({"message": call.fault.message}).encode()
            exception = encode_event(
                {":exception-type": call.fault.name, ":content-type": "application/json",
                 ":message-type": "exception"}, payload,
            )  # fmt: skip
            frames = [*frames[:2], exception]
        elif call.kind == "malformed_json":  # a frame whose CRC does not match
            bad = bytearray(frames[1])
            bad[-5] ^= 0xFF
            frames, kind = [frames[0], bytes(bad), *frames[2:]], "ok"
        return self.send(
            call, events=frames, kind=kind, content_type="application/vnd.amazon.eventstream",
            stall_after=2,
        )  # fmt: skip

    def _invoke(self, call: Call, model: str) -> Reply:
        """InvokeModel, for the embedding models (``tests.fakes.bedrock_embeddings``)."""
        if not is_embedding_model(model):
            raise _Rejection(
                400, "ValidationException",
                "The provided model identifier is invalid or does not support InvokeModel "
                "embeddings here.",
            )  # fmt: skip
        try:
            answer, tokens = invoke_answer(model, call.body)
        except Invalid as exc:
            raise _Rejection(400, "ValidationException", str(exc)) from None
        self._tokens[call.ident] = tokens
        return self.send(call, json.dumps(answer).encode())

    def reply_headers(self, call: Call | None) -> list[str]:
        headers = [f"x-amzn-requestid: {secrets.token_hex(4)}-{secrets.token_hex(2)}"]
        tokens = self._tokens.pop(call.ident, None) if call is not None else None
        if tokens is not None:
            headers.append(f"x-amzn-bedrock-input-token-count: {tokens}")
        return headers

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> Reply:  # fmt: skip
        name, default = _DEFAULT_ERRORS.get(status, ("InternalServerException", f"HTTP {status}"))
        return self._aws_error(call, status, name, message or default, retry_after=retry_after)

    def fault_status(self, call: Call, fault: Fault) -> Reply:
        """A scripted status; a dict body may name the ``__type`` and ``message``."""
        body = fault.body if isinstance(fault.body, dict) else {}
        name, message = _DEFAULT_ERRORS.get(
            fault.code, ("InternalServerException", f"HTTP {fault.code}")
        )
        return self._aws_error(
            call, fault.code, str(body.get("__type", name)), str(body.get("message", message)),
            retry_after=fault.retry_after,
        )  # fmt: skip

    def _aws_error(
        self, call: Call | None, status: int, name: str, message: str, retry_after: Any = None
    ) -> Reply:
        """rest-json: the type in ``x-amzn-ErrorType``, ``{"message": ...}`` as the body."""
        return self.reject(
            call, status, json.dumps({"message": message}).encode(), retry_after=retry_after,
            headers=[f"x-amzn-errortype: {name}{_ERROR_TYPE_SUFFIX}"],
        )  # fmt: skip

    # -- authentication

    def _authenticate(self, call: Call) -> None:
        method, target, headers, raw = call.method, call.target, call.headers, call.raw
        header = headers.get("authorization")
        if not header:
            raise _Rejection(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        if header.startswith("Bearer "):
            if header[7:] not in self.api_keys:
                raise _Rejection(
                    403,
                    "AccessDeniedException",
                    "Invalid API Key format: Must start with pre-defined prefix",
                )
            return
        parsed = _AUTH.match(header)
        if parsed is None:
            raise _Rejection(400, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")  # fmt: skip
        credentials = self.credentials.get(parsed["key"])
        if credentials is None:
            raise _Rejection(403, "UnrecognizedClientException", "The security token included in the request is invalid.")  # fmt: skip
        if parsed["service"] != "bedrock":
            raise _Rejection(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")  # fmt: skip
        if parsed["region"] != self.region:
            raise _Rejection(403, "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{parsed['region']}'.")  # fmt: skip
        if (
            credentials.session_token
            and headers.get("x-amz-security-token") != credentials.session_token
        ):
            raise _Rejection(403, "UnrecognizedClientException", "The security token included in the request is invalid.")  # fmt: skip
        signed = parsed["signed"].split(";")
        date = headers.get("x-amz-date", "")
        if (
            "host" not in signed
            or "x-amz-date" not in signed
            or not date.startswith(parsed["date"])
        ):
            raise _Rejection(403, "InvalidSignatureException", "Signature expired or date headers missing from SignedHeaders.")  # fmt: skip
        if any(name not in headers for name in signed):
            raise _Rejection(403, "InvalidSignatureException", "A signed header is missing from the request.")  # fmt: skip
        if parsed["signature"] != _signature(
            method, target, headers, raw, signed, credentials, self.region
        ):
            raise _Rejection(403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")  # fmt: skip

    # -- replies

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the model "says": an echo, a tool call, or what a tool returned."""
        last = body["messages"][-1]
        results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
        texts = [b["text"] for b in last["content"] if "text" in b]
        images = sum(1 for b in last["content"] if "image" in b)
        tools = (body.get("toolConfig") or {}).get("tools") or []
        blocks: list[dict[str, Any]]
        if results:
            said = " ".join(
                c.get("text", json.dumps(c.get("json"))) for r in results for c in r["content"]
            )
            blocks, stop = [{"text": f"tool said: {said}"}], "end_turn"
        elif tools and "call_tool" in " ".join(texts):
            choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
            name = (choice.get("tool") or {}).get("name") or tools[0]["toolSpec"]["name"]
            use = {
                "toolUseId": "tooluse_" + secrets.token_hex(8),
                "name": name,
                "input": {"query": "echo"},
            }
            blocks, stop = [{"text": "Calling the tool."}, {"toolUse": use}], "tool_use"
        else:
            text = (
                "echo: "
                + " ".join(texts)
                + (f" [{images} image{'s' * (images > 1)}]" if images else "")
            )
            limit = (body.get("inferenceConfig") or {}).get("maxTokens")
            words = text.split(" ")
            stop = "end_turn"
            if limit is not None and len(words) > limit:
                words, stop = words[:limit], "max_tokens"
            blocks = [{"text": " ".join(words)}]
        prompt = sum(len(b.get("text", "").split()) for m in body["messages"] for b in m["content"])
        prompt += sum(len(s.get("text", "").split()) for s in body.get("system") or [])
        output = sum(len(b.get("text", "").split()) + (5 if "toolUse" in b else 0) for b in blocks)
        usage = {"inputTokens": prompt, "outputTokens": output}
        if self.cache_read_tokens or self.cache_write_tokens:
            usage["cacheReadInputTokens"] = self.cache_read_tokens
            usage["cacheWriteInputTokens"] = self.cache_write_tokens
        usage["totalTokens"] = sum(usage.values())
        return {
            "output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 42},
        }


def model_path(model: str, action: str = "converse") -> str:
    """The request path for a model ID, ":" and other sub-delimiters unencoded."""
    return "/model/" + urllib.parse.quote(model, safe=":@!$&'()*+,;=") + "/" + action
