"""The tracing plugin: spans exported over OTLP/HTTP to a collector on loopback.

The collector is the loopback fake server with a handler that decodes each
``ExportTraceServiceRequest`` with the official opentelemetry-proto package.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from turnout import Engine, TurnoutError
from turnout.plugins import tracing
from turnout.policy.models import Telemetry

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.fakes.server import LoopbackServer, Reply, Request

POLICY = """\
version: 1
telemetry: {{traces: true, endpoint: "http://127.0.0.1:{port}", service_name: gateway-test,
             content: {content}}}
providers:
  mock: {{type: mock}}
  down: {{type: mock, options: {{script: [{{fail: server_error}}], repeat: true}}}}
defaults:
  retry: {{attempts: 2, backoff: 1ms}}
routes:
  - name: assistant
    match: {{model: assistant}}
    targets: [down/big]
    fallbacks: [mock/small]
  - name: hopeless
    match: {{model: hopeless}}
    targets: [down/big]
"""

HI = [{"role": "user", "content": "a private question"}]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP traces endpoint: keeps every span it is sent, with its service name."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.services: list[str] = []
        self.paths: list[str] = []
        self.types: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        export = ExportTraceServiceRequest.FromString(request.raw)
        with self._lock:
            self.paths.append(request.path)
            self.types.append(request.headers.get("content-type", ""))
            for resource_spans in export.resource_spans:
                for attr in resource_spans.resource.attributes:
                    if attr.key == "service.name":
                        self.services.append(attr.value.string_value)
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
        return Reply.json(200, {})

    def request_spans(self, request_id: str) -> tuple[Span, list[Span]]:
        """The request span of one request and its attempt spans, in attempt order."""
        assert tracing.force_flush(10_000)
        with self._lock:
            spans = list(self.spans)
        [root] = [s for s in spans if attrs(s).get("turnout.request_id") == request_id]
        children = [s for s in spans if s.parent_span_id == root.span_id]
        children.sort(key=lambda s: attrs(s)["turnout.attempt.number"])
        return root, children


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


def attrs(span: Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    handler = Collector()
    with LoopbackServer(handler) as server:
        handler.port = server.port  # type: ignore[attr-defined]
        yield handler


def engine_for(collector: Collector, content: bool = False) -> Engine:
    port = collector.port  # type: ignore[attr-defined]
    text = POLICY.format(port=port, content="true" if content else "false")
    return Engine.from_yaml(text, autoload=False)


async def test_a_retry_and_a_fallback_are_child_spans_of_the_request(collector: Collector) -> None:
    engine = engine_for(collector)
    await engine.chat(
        {"model": "assistant", "messages": HI, "max_tokens": 20}, request_id="req-fallback"
    )
    root, children = collector.request_spans("req-fallback")

    assert root.name == "chat assistant"
    assert root.kind == Span.SPAN_KIND_SERVER
    assert root.parent_span_id == b""
    top = attrs(root)
    assert top["gen_ai.operation.name"] == "chat"
    assert top["gen_ai.request.model"] == "assistant"
    assert top["gen_ai.request.max_tokens"] == 20
    assert top["gen_ai.response.model"] == "small"
    assert top["gen_ai.provider.name"] == "mock"
    assert top["turnout.route"] == "assistant"
    assert top["turnout.attempts"] == 3
    assert top["gen_ai.usage.input_tokens"] > 0
    assert top["gen_ai.usage.output_tokens"] > 0
    assert top["gen_ai.response.finish_reasons"] == ["stop"]
    assert "error.type" not in top
    assert "gen_ai.input.messages" not in top  # content is off by default
    assert "gateway-test" in collector.services
    assert collector.paths[-1] == "/v1/traces"
    assert collector.types[-1] == "application/x-protobuf"

    assert [s.name for s in children] == ["chat big", "chat big", "chat small"]
    assert all(s.kind == Span.SPAN_KIND_CLIENT for s in children)
    assert all(s.trace_id == root.trace_id for s in children)
    roles = [attrs(s)["turnout.attempt.role"] for s in children]
    assert roles == ["primary", "retry", "fallback"]
    first, _, last = (attrs(s) for s in children)
    assert first["error.type"] == first["turnout.failure_class"] == "server_error"
    assert children[0].status.code == children[0].status.STATUS_CODE_ERROR
    assert "gen_ai.response.model" not in first
    assert last["turnout.attempt.outcome"] == "ok"
    assert last["gen_ai.response.model"] == "small"
    assert last["gen_ai.usage.output_tokens"] == top["gen_ai.usage.output_tokens"]
    assert "error.type" not in last
    # the attempts happen one after another, inside the request span
    times = [(s.start_time_unix_nano, s.end_time_unix_nano) for s in children]
    assert root.start_time_unix_nano <= times[0][0]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    assert times[-1][1] <= root.end_time_unix_nano


async def test_a_stream_has_its_spans_and_its_served_attempt_lasts_to_the_end(
    collector: Collector,
) -> None:
    engine = engine_for(collector)
    stream = engine.stream(
        {"model": "assistant", "messages": HI, "stream": True}, request_id="req-stream"
    )
    chunks = [chunk async for chunk in stream]
    assert chunks
    root, children = collector.request_spans("req-stream")
    assert attrs(root)["turnout.stream"] is True
    assert attrs(root)["gen_ai.response.model"] == "small"
    assert [attrs(s)["turnout.attempt.role"] for s in children] == [
        "primary",
        "retry",
        "fallback",
    ]
    served = children[-1]
    assert "turnout.time_to_first_token_ms" in attrs(served)
    assert served.end_time_unix_nano == root.end_time_unix_nano


async def test_a_callers_traceparent_makes_the_request_span_its_child(
    collector: Collector,
) -> None:
    engine = engine_for(collector)
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    await engine.chat(
        {"model": "assistant", "messages": HI},
        headers={"traceparent": traceparent},
        request_id="req-parent",
    )
    root, children = collector.request_spans("req-parent")
    assert root.trace_id.hex() == CALLER_TRACE
    assert root.parent_span_id.hex() == CALLER_SPAN
    assert all(s.trace_id.hex() == CALLER_TRACE for s in children)


async def test_a_failed_request_carries_its_error_and_content_only_when_asked(
    collector: Collector,
) -> None:
    engine = engine_for(collector, content=True)
    with pytest.raises(TurnoutError):
        await engine.chat({"model": "hopeless", "messages": HI}, request_id="req-failed")
    root, children = collector.request_spans("req-failed")
    top = attrs(root)
    assert top["error.type"]
    assert root.status.code == root.status.STATUS_CODE_ERROR
    assert "a private question" in top["gen_ai.input.messages"]
    assert [attrs(s)["turnout.attempt.role"] for s in children] == ["primary", "retry"]


def test_tracing_is_off_unless_the_policy_or_the_environment_turns_it_on() -> None:
    assert not tracing.traces_enabled(Telemetry(), {})
    assert tracing.traces_enabled(Telemetry(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not tracing.traces_enabled(
        Telemetry(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.traces_enabled(
        Telemetry(traces=False), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}
    )
    assert tracing.traces_enabled(Telemetry(traces=True), {})


UPSTREAM_POLICY = """\
version: 1
telemetry: {{traces: true, endpoint: "http://127.0.0.1:{port}"}}
providers:
  flaky: {{type: openai, base_url: "{flaky}", api_key: sk-flaky}}
  steady: {{type: openai, base_url: "{steady}", api_key: sk-steady}}
defaults:
  retry: {{attempts: 2, backoff: 1ms}}
routes:
  - name: assistant
    match: {{model: assistant}}
    targets: [flaky/gpt-4o]
    fallbacks: [steady/gpt-4o-mini]
"""


def _traceparents(fake: FakeOpenAI) -> list[tuple[str, str, str]]:
    """(trace id, parent span id, flags) of every request the upstream got."""
    out = []
    for request in fake.requests:
        version, trace, span, flags = request.headers["traceparent"].split("-")
        assert version == "00"
        out.append((trace, span, flags))
    return out


@pytest.mark.parametrize("caller", [None, f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"])
async def test_every_upstream_call_carries_the_traceparent_of_its_attempt_span(
    collector: Collector, caller: str | None
) -> None:
    port = collector.port  # type: ignore[attr-defined]
    with FakeOpenAI(record=True) as flaky, FakeOpenAI(record=True) as steady:
        flaky.script(Fault.status(500), Fault.status(500))
        text = UPSTREAM_POLICY.format(port=port, flaky=flaky.base_url, steady=steady.base_url)
        engine = Engine.from_yaml(text, autoload=False)
        request_id = f"req-upstream-{bool(caller)}"
        headers = {"traceparent": caller} if caller else {}
        await engine.chat(
            {"model": "assistant", "messages": HI}, headers=headers, request_id=request_id
        )
        await engine.aclose()
        told = _traceparents(flaky) + _traceparents(steady)
    root, children = collector.request_spans(request_id)
    assert [attrs(s)["turnout.attempt.role"] for s in children] == ["primary", "retry", "fallback"]
    # the upstreams were told the request's trace, and each call its own attempt span
    assert {trace for trace, _, _ in told} == {root.trace_id.hex()}
    assert [span for _, span, _ in told] == [s.span_id.hex() for s in children]
    assert {flags for _, _, flags in told} == {"01"}
    if caller:
        assert root.trace_id.hex() == CALLER_TRACE
        assert root.parent_span_id.hex() == CALLER_SPAN
    else:
        assert not root.parent_span_id


async def test_with_tracing_off_no_traceparent_goes_upstream() -> None:
    with FakeOpenAI(record=True) as fake:
        text = (
            "version: 1\n"
            f'providers: {{up: {{type: openai, base_url: "{fake.base_url}", api_key: sk-x}}}}\n'
            "routes: [{name: r, match: {model: m}, targets: [up/gpt-4o]}]\n"
        )
        engine = Engine.from_yaml(text, autoload=False)
        caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        await engine.chat({"model": "m", "messages": HI}, headers={"traceparent": caller})
        await engine.aclose()
        [request] = fake.requests
    assert "traceparent" not in request.headers
