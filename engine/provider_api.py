"""Everything a provider plugin needs, in one public module.

The built-in providers (``turnout.plugins.providers``) import only this, and
so can a third-party provider: the plugin contract (``Provider``,
``ProviderCall``, ``ProviderSettings``, the registration hook), the base of
HTTP providers (``TranslatingProvider`` and its one ``StreamTranslator``
protocol), the bytes-in/bytes-out upstream interface, the failure
classification of HTTP answers, the OpenAI-request toolkit and the wire
models. See docs/providers.md.
"""

from __future__ import annotations

from turnout.contract.hookspecs import RegisterProvider, hookimpl
from turnout.contract.http_errors import (
    classify_error,
    clean,
    error_from_payload,
    error_from_response,
    error_from_transport,
    error_object,
    parse_retry_after,
)
from turnout.contract.openai_request import (
    DataURL,
    FunctionTool,
    ToolCall,
    ToolChoice,
    TranslationError,
    append_turn,
    arguments,
    data_url,
    function_tool,
    image_url,
    path_segment,
    text_parts,
    tool_call,
    tool_choice,
)
from turnout.contract.provider import (
    NativeEvent,
    Provider,
    ProviderCall,
    ProviderSettings,
    RawChatResponse,
)
from turnout.contract.translating import DRAIN_SECONDS, StreamTranslator, TranslatingProvider, drain
from turnout.errors import FailureClass, ProviderError
from turnout.policy.units import Duration
from turnout.upstream.interface import (
    HttpxUpstream,
    Reply,
    StreamReply,
    Upstream,
    UpstreamError,
    UpstreamRequest,
)
from turnout.upstream.sse import (
    EventSplitter,
    MalformedEvents,
    ServerSentEvent,
    event_fields,
    server_sent_events,
)
from turnout.wire.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ExtraFields,
    Message,
    ResponseMessage,
    Usage,
)
from turnout.wire.embeddings import Embeddings, EmbeddingsRequest
from turnout.wire.relay import ChunkRelay, EventBatch, RelayedEvents

__all__ = [
    "DRAIN_SECONDS",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChunkChoice",
    "ChunkRelay",
    "DataURL",
    "Delta",
    "Duration",
    "Embeddings",
    "EmbeddingsRequest",
    "EventBatch",
    "EventSplitter",
    "ExtraFields",
    "FailureClass",
    "FunctionTool",
    "HttpxUpstream",
    "MalformedEvents",
    "Message",
    "NativeEvent",
    "Provider",
    "ProviderCall",
    "ProviderError",
    "ProviderSettings",
    "RawChatResponse",
    "RegisterProvider",
    "RelayedEvents",
    "Reply",
    "ResponseMessage",
    "ServerSentEvent",
    "StreamReply",
    "StreamTranslator",
    "ToolCall",
    "ToolChoice",
    "TranslatingProvider",
    "TranslationError",
    "Upstream",
    "UpstreamError",
    "UpstreamRequest",
    "Usage",
    "append_turn",
    "arguments",
    "classify_error",
    "clean",
    "data_url",
    "drain",
    "error_from_payload",
    "error_from_response",
    "error_from_transport",
    "error_object",
    "event_fields",
    "function_tool",
    "hookimpl",
    "image_url",
    "parse_retry_after",
    "path_segment",
    "server_sent_events",
    "text_parts",
    "tool_call",
    "tool_choice",
]
