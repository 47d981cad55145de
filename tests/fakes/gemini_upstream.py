"""A fake Gemini API (Google AI Studio) upstream that really listens on loopback.

It speaks the Generative Language API's REST format, as its reference and the
official SDK (googleapis/python-genai) describe it:

- ``POST /v1beta/models/{model}:generateContent`` answers one
  ``GenerateContentResponse``; ``:streamGenerateContent?alt=sse`` answers them
  as Server-Sent Events (``data: {...}`` separated by CRLF CRLF, no terminator)
  and, without ``alt=sse``, as one JSON array.
- ``:embedContent`` and ``:batchEmbedContents`` embed, for the embedding
  models only (``tests.fakes.gemini_embeddings``).
- The key must be in ``x-goog-api-key``: none is 403 PERMISSION_DENIED, a
  wrong one 400 INVALID_ARGUMENT with ``API_KEY_INVALID`` (as Google does it).
- Errors are ``{"error": {"code", "message", "status", "details"}}``; a 429
  carries a ``google.rpc.RetryInfo`` detail rather than a Retry-After header.

It rejects, with the real API's wording where it is known, what the real API
rejects: unknown fields (only the lowerCamelCase names of the reference are
known, so it is a little stricter than Google, which also takes snake_case),
roles other than user/model, empty parts, consecutive turns of one role, a
function call turn that follows no user turn, function responses that do not
answer the function call turn before them one for one, bad base64, both
``parameters`` and ``parametersJsonSchema``, and, for ``gemini-3*`` models,
function calls replayed without a thought signature it issued (or Google's
``skip_thought_signature_validator`` sentinel), and a ``thinkingConfig`` outside
Gemini's ranges (a ``thinkingLevel`` before Gemini 3, both a budget and a level).

Replies echo the last user turn ("echo: <text>"); "call_tool" in it (with
tools) makes the model call the first allowed function, "call_two_tools" call
it twice, "block_prompt" blocks the prompt (``promptFeedback.blockReason``),
"unsafe_reply" ends the candidate with ``finishReason: SAFETY``. Faults are
the shared ones (``tests.fakes.upstream``: `Fault`, scripted or in the
``x-fake-fault`` header), with Google-shaped error bodies.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any

from tests.fakes.faults import Fault
from tests.fakes.gemini_embeddings import EMBEDDING_MODELS, embed_answer
from tests.fakes.gemini_wire import SKIP_SIGNATURE, Invalid, validate
from tests.fakes.server import Reply
from tests.fakes.upstream import Call, KeyedUpstream, RecordedRequest

__all__ = ["SKIP_SIGNATURE", "FakeGemini", "Fault", "RecordedRequest", "google_error"]

DEFAULT_KEY = "AIzaSy-fake-gemini-key-0123456789"

_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_PIECES = re.compile(r"\s*\S+|\s+$").findall
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def google_error(
    code: int,
    message: str | None = None,
    *,
    details: list[dict[str, Any]] | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """Google's error body for an HTTP status."""
    error: dict[str, Any] = {
        "code": code,
        "message": message or _MESSAGES.get(code, f"HTTP {code}"),
        "status": status or _STATUS.get(code, "UNKNOWN" if code >= 500 else "FAILED_PRECONDITION"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _retry_info(seconds: float | str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}


def _json(value: Any) -> bytes:
    return _dumps(value).encode()


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + _json(payload) + b"\r\n\r\n"


# ---------------------------------------------------------------- responses


class _Generation:
    """One reply to a valid request, as a response body or a list of stream events."""

    def __init__(self, body: dict[str, Any], model: str, upstream: FakeGemini) -> None:
        self.body = body
        self.model = model
        self.upstream = upstream
        self.response_id = secrets.token_urlsafe(12)
        contents = body["contents"]
        last = contents[-1]
        parts = last["parts"] if last.get("role", "user") == "user" else []
        self.text = " ".join(p["text"] for p in parts if "text" in p).strip()
        media = [
            (p.get("inlineData") or p.get("fileData"))["mimeType"]
            for p in parts
            if "inlineData" in p or "fileData" in p
        ]
        answers = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if answers and not self.text:
            self.text = "result " + _dumps([a["response"] for a in answers])
        if media:
            self.text += " [" + ", ".join(media) + "]"
        system = (body.get("systemInstruction") or {}).get("parts", [])
        every = [p for c in contents for p in c["parts"]] + system
        self.prompt_tokens = sum(len(p["text"].split()) if "text" in p else 1 for p in every)
        config = body.get("generationConfig") or {}
        self.count = config.get("candidateCount", 1)
        self.calls = self._calls(body)
        self.block = "block_prompt" in self.text
        self.unsafe = "unsafe_reply" in self.text
        self.finish = "STOP"
        reply = "echo: " + self.text
        if config.get("responseMimeType") == "application/json":
            reply = _dumps({"echo": self.text})
        for stop in config.get("stopSequences") or []:
            if stop in reply:
                reply = reply[: reply.index(stop)]
        self.pieces: list[str] = _PIECES(reply)
        limit = config.get("maxOutputTokens")
        if isinstance(limit, int) and limit < len(self.pieces):
            del self.pieces[limit:]
            self.finish = "MAX_TOKENS"
        if self.unsafe:
            self.pieces, self.finish = [], "SAFETY"

    def _calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        declarations = [
            d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []
        ]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        if not declarations or mode == "NONE":
            return []
        allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declarations]
        wanted = "call_tool" in self.text or "call_two_tools" in self.text or mode == "ANY"
        if not wanted:
            return []
        times = 2 if "call_two_tools" in self.text else 1
        calls = []
        for number in range(times):
            part: dict[str, Any] = {
                "functionCall": {"name": allowed[0], "args": {"query": self.text, "n": number}}
            }
            if number == 0 and self.model.startswith(("gemini-2.5", "gemini-3")):
                signature = base64.b64encode(secrets.token_bytes(24)).decode()
                self.upstream.signatures.add(signature)
                part["thoughtSignature"] = signature
            calls.append(part)
        return calls

    def usage(self, final: bool = True) -> dict[str, Any]:
        cached = self.upstream.cached_tokens
        prompt = self.prompt_tokens + cached
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if cached:
            usage["cachedContentTokenCount"] = cached
        if not final or self.block:
            usage["totalTokenCount"] = prompt
            return usage
        output = (5 * len(self.calls) if self.calls else len(self.pieces)) * self.count
        thoughts = self.upstream.thoughts_tokens
        usage["candidatesTokenCount"] = output
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        usage["totalTokenCount"] = prompt + output + thoughts
        return usage

    def _candidate(
        self, index: int, parts: list[dict[str, Any]], finish: str | None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {}
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        if index:  # proto3 JSON leaves zero values out
            candidate["index"] = index
        if finish == "SAFETY":
            candidate["safetyRatings"] = [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                }
            ]
        return candidate

    def _envelope(self, candidates: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        if self.block:
            return {
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                "usageMetadata": self.usage(),
                "modelVersion": self.model,
                "responseId": self.response_id,
            }
        return {
            "candidates": candidates,
            "usageMetadata": self.usage(final),
            "modelVersion": self.model,
            "responseId": self.response_id,
        }

    def _text(self, index: int) -> str:
        return "".join(self.pieces) + (f" #{index}" if index and self.pieces else "")

    def response(self) -> dict[str, Any]:
        candidates = []
        for index in range(self.count):
            parts = self.calls or ([{"text": self._text(index)}] if self.pieces else [])
            candidates.append(self._candidate(index, parts, self.finish))
        return self._envelope(candidates, True)

    def events(self) -> list[dict[str, Any]]:
        if self.block:
            return [self._envelope([], True)]
        events = []
        if self.calls:
            for call in self.calls:
                events.append(
                    self._envelope(
                        [self._candidate(i, [call], None) for i in range(self.count)], False
                    )
                )
        else:
            for number, piece in enumerate(self.pieces):
                candidates = [
                    self._candidate(
                        i,
                        [
                            {
                                "text": piece
                                + (f" #{i}" if i and number == len(self.pieces) - 1 else "")
                            }
                        ],
                        None,
                    )
                    for i in range(self.count)
                ]
                events.append(self._envelope(candidates, False))
        last = [self._candidate(i, [{"text": ""}], self.finish) for i in range(self.count)]
        events.append(self._envelope(last, True))
        return events


# ---------------------------------------------------------------- public API


class FakeGemini(KeyedUpstream):
    """A fake Gemini API on its own thread and event loop.

    Takes `api_key` (the only key accepted, `DEFAULT_KEY` unless given; None
    accepts any) and the options every fake takes (`tests.fakes.upstream.Options`).
    """

    default_key = DEFAULT_KEY
    cached_tokens = 0
    thoughts_tokens = 0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.signatures: set[str] = set()  # thought signatures it issued

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)

    def answer(self, call: Call) -> Reply:
        early = self.early_fault(call)
        if early is not None:
            return early
        match = re.fullmatch(
            r"/v1beta/models/([^/:]+):"
            r"(generateContent|streamGenerateContent|embedContent|batchEmbedContents)",
            call.path,
        )
        if match is None or call.method != "POST":
            return self.error(call, 404, f"Invalid URL ({call.method} {call.path})")
        model, action = match.groups()
        key = call.headers.get("x-goog-api-key")
        if not key:
            return self.error(
                call,
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if self.api_key is not None and key != self.api_key:
            return self._google(
                call, 400, "API key not valid. Please pass a valid API key.",
                details=[{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }],
            )  # fmt: skip
        if action in ("embedContent", "batchEmbedContents"):
            return self._embed(call, model, action)
        if not model.startswith("gemini-") or model in EMBEDDING_MODELS:
            return self.error(
                call,
                404,
                f"models/{model} is not found for API version v1beta, or is not supported "
                f"for {action}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        if call.bad_json:
            return self.error(call, 400, "Invalid JSON payload received. Unexpected token.")
        try:
            validate(call.body, model, self.signatures)
        except Invalid as exc:
            return self.error(call, 400, str(exc))
        generation = _Generation(call.body, model, self)
        failed = call.kind == "error_body_200"
        if action == "generateContent":
            if failed:
                return self.send(call, _json(google_error(500)), kind="ok")
            return self.send(call, _json(generation.response()))
        events = generation.events()
        if "alt=sse" not in call.query.split("&"):
            return self.send(call, _json(events))
        if failed:
            return self.send(call, events=[_event(google_error(500))], kind="ok")
        return self.send(call, events=[_event(e) for e in events])

    def _embed(self, call: Call, model: str, action: str) -> Reply:
        if model not in EMBEDDING_MODELS:
            return self.error(
                call,
                404,
                f"models/{model} is not found for API version v1beta, or is not supported "
                f"for {action}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        if call.bad_json:
            return self.error(call, 400, "Invalid JSON payload received. Unexpected token.")
        try:
            answer = embed_answer(call.body, model, action)
        except Invalid as exc:
            return self.error(call, 400, str(exc))
        if call.kind == "error_body_200":
            return self.send(call, _json(google_error(500)), kind="ok")
        return self.send(call, _json(answer))

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> Reply:  # fmt: skip
        """Google's error; a retry delay goes in a RetryInfo detail, not a header."""
        details = [_retry_info(retry_after)] if retry_after is not None else None
        return self._google(call, status, message, details=details)

    def _google(self, call: Call | None, status: int, message: str | None, **more: Any) -> Reply:
        return self.reject(call, status, google_error(status, message, **more))

    def fault_status(self, call: Call, fault: Fault) -> Reply:
        if fault.body is not None:  # verbatim, and Google sends no Retry-After
            return self.reject(call, fault.code, fault.body)
        return self.error(call, fault.code, retry_after=fault.retry_after)

    def usage(self, *, cached_tokens: int = 0, thoughts_tokens: int = 0) -> None:
        """Report these cached and thinking tokens in every reply's usageMetadata."""
        self.cached_tokens = cached_tokens
        self.thoughts_tokens = thoughts_tokens

    def reset(self) -> None:
        super().reset()
        self.usage()
