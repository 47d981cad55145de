"""``GET /openapi.json``: a hand-written OpenAPI 3.1 description of the gateway.

Written by hand rather than generated, because the gateway is raw ASGI; the
reliability suite (tests/reliability) checks the live gateway against it with
schemathesis, so it stays accurate. Request validation itself is
``turnout.wire.chat.ChatRequest``; this document mirrors it.
"""

from __future__ import annotations

from typing import Any

from turnout.http.wire import json_bytes

__all__ = ["OPENAPI", "openapi_json"]

_ERROR_STATUSES = {
    "400": "Malformed JSON, non-UTF-8, missing fields, too many messages, or an upstream's 400",
    "401": "A gateway API key is required or unknown (when the policy has keys:)",
    "403": "The gateway API key may not use this route or model",
    "404": "No route matches the model",
    "408": "The request body did not arrive in time",
    "413": "The body is larger than gateway.max_body",
    "422": "A field has the wrong type or is out of range",
    "429": "Rate limited or over budget after every attempt (Retry-After when known)",
    "431": "The headers are larger than gateway.max_header_bytes",
    "500": "A bug in turnout (the body names the request id)",
    "502": "The upstream failed after every attempt",
    "503": "Upstreams overloaded, or no target available",
    "504": "The upstream timed out after every attempt",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: _json(_ref("Error"), _ERROR_STATUSES[s]) for s in statuses}


_number = {"type": "number"}
_nullable_int_min1 = {"type": ["integer", "null"], "minimum": 1}

_SCHEMAS: dict[str, Any] = {
    "Message": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {
                "type": "string",
                "enum": ["system", "developer", "user", "assistant", "tool", "function"],
            },
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object"}},
                    {"type": "null"},
                ]
            },
            "name": {"type": ["string", "null"]},
            "tool_calls": {"type": ["array", "null"], "items": {"type": "object"}},
            "tool_call_id": {"type": ["string", "null"]},
        },
    },
    "ChatRequest": {
        "type": "object",
        "description": "OpenAI chat-completions request; unknown fields pass through upstream.",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "examples": ["smart"]},
            "messages": {"type": "array", "minItems": 1, "items": _ref("Message")},
            "max_tokens": _nullable_int_min1,
            "max_completion_tokens": _nullable_int_min1,
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 128},
            "stream": {"type": ["boolean", "null"]},
            "stream_options": {
                "type": ["object", "null"],
                "properties": {"include_usage": {"type": ["boolean", "null"]}},
            },
            "stop": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "null"},
                ]
            },
            "presence_penalty": {"type": ["number", "null"], "minimum": -2, "maximum": 2},
            "frequency_penalty": {"type": ["number", "null"], "minimum": -2, "maximum": 2},
            "logit_bias": {"type": ["object", "null"], "additionalProperties": _number},
            "logprobs": {"type": ["boolean", "null"]},
            "top_logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
            "metadata": {"type": ["object", "null"]},
            "tools": {"type": ["array", "null"], "items": {"type": "object"}},
            "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "null"}]},
            "parallel_tool_calls": {"type": ["boolean", "null"]},
            "response_format": {"type": ["object", "null"]},
            "seed": {"type": ["integer", "null"]},
            "user": {"type": ["string", "null"]},
            "fallbacks": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": '"provider/model" targets to try after the route\'s own',
            },
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": ["object", "null"]},
            "extra_fields": _ref("ExtraFields"),
        },
    },
    "ExtraFields": {
        "type": ["object", "null"],
        "description": "Bifrost additions: provider, latency, billed_usage, cost, attempts, ...",
        "properties": {
            "provider": {"type": ["string", "null"]},
            "request_type": {"type": ["string", "null"]},
            "model_requested": {"type": ["string", "null"]},
            "route": {"type": ["string", "null"]},
            "attempts": {"type": ["array", "null"], "items": {"type": "object"}},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "status_code", "extra_fields"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "code", "message", "param"],
                "properties": {
                    "type": {"type": "string"},
                    "code": {"type": ["string", "null"]},
                    "message": {"type": "string", "minLength": 1},
                    "param": {"type": ["string", "null"]},
                },
            },
            "status_code": {"type": "integer", "minimum": 400, "maximum": 599},
            "extra_fields": {"type": "object"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "owned_by"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "model"},
                        "owned_by": {"type": "string"},
                    },
                },
            },
        },
    },
    "Status": {"type": "object", "required": ["status"]},
    "ServerSentEvent": {
        "type": "object",
        "description": "One event: data is a chat.completion.chunk as JSON, or [DONE]; "
        'event "error" carries an Error as JSON and ends the stream',
        "required": ["data"],
        "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    },
}

_chat = {
    "post": {
        "operationId": "createChatCompletion",
        "summary": "Route one chat completion (stream: true answers with Server-Sent Events)",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("ChatRequest")}},
        },
        "responses": {
            "200": {
                "description": "The completion, or an SSE stream ending in data: [DONE] "
                "(or in an error event when the upstream fails mid-stream)",
                "content": {
                    "application/json": {"schema": _ref("ChatCompletion")},
                    "text/event-stream": {"schema": _ref("ServerSentEvent")},
                },
            },
            **_errors(*_ERROR_STATUSES),
        },
    }
}

_models = {
    "get": {
        "operationId": "listModels",
        "summary": "Route aliases and provider models of the policy",
        "responses": {"200": _json(_ref("ModelList"), "The models")},
    }
}

_OBJECT = {"type": "object"}


def _surface(operation: str, summary: str, required: list[str]) -> dict[str, Any]:
    """A translated surface (docs/surfaces.md): its own wire format, loosely typed here."""
    body = {"type": "object", "required": required, "properties": {"model": {"type": "string"}}}
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {
                    "description": "The answer, or an SSE stream with stream: true",
                    "content": {
                        "application/json": {"schema": _OBJECT},
                        "text/event-stream": {"schema": _ref("ServerSentEvent")},
                    },
                },
                **_errors(*_ERROR_STATUSES),
            },
        }
    }


def _by_id(name: str, operation: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": operation,
        "summary": summary,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {"200": _json(_OBJECT, summary), **_errors("400", "401", "404", "503")},
    }


_SURFACES = {
    "/v1/responses": _surface(
        "createResponse", "OpenAI Responses API, translated to chat", ["model"]
    ),
    "/v1/responses/{response_id}": {
        "get": _by_id("response_id", "getResponse", "A stored response"),
        "delete": _by_id("response_id", "deleteResponse", "Forget a stored response"),
    },
    "/v1/responses/{response_id}/input_items": {
        "get": _by_id("response_id", "listInputItems", "A stored response's input items"),
    },
    "/v1/completions": _surface(
        "createCompletion", "Legacy text completion, as one chat turn", ["model", "prompt"]
    ),
    "/v1/embeddings": _surface(
        "createEmbedding", "Embeddings, routed by the policy", ["model", "input"]
    ),
    "/v1/models/{model}": {"get": _by_id("model", "getModel", "One model or route alias")},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "turnout gateway",
        "version": "1",
        "description": "OpenAI-compatible chat completions routed by a routes.yaml policy.",
    },
    "paths": {
        "/v1/chat/completions": _chat,
        "/v1/models": _models,
        **_SURFACES,
        "/v1/budgets": {
            "get": {
                "operationId": "listBudgets",
                "summary": "Spend, remaining and reset of each budget and rate limit",
                "responses": {
                    "200": _json({"type": "object", "required": ["object", "data"]}, "The budgets"),
                    **_errors("401", "503"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process answers",
                "responses": {"200": _json(_ref("Status"), "Alive")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: at least one provider is enabled, not shutting down",
                "responses": {
                    "200": _json(_ref("Status"), "Ready"),
                    "503": _json(
                        _ref("Status"), "No provider is enabled, or draining after SIGTERM"
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    },
    "components": {"schemas": _SCHEMAS},
}
"""The document; ``/chat/completions`` and ``/models`` are undocumented aliases."""

_BYTES = json_bytes(OPENAPI)


def openapi_json() -> bytes:
    """The document as JSON bytes (built once at import)."""
    return _BYTES
