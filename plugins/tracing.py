"""OpenTelemetry traces as an ordinary observer plugin.

One span per request (``chat {model}``, kind SERVER) and one child span per
upstream attempt (kind CLIENT), named and attributed by the OpenTelemetry GenAI
semantic conventions (``gen_ai.*``) plus turnout's own (``turnout.*``): route,
attempt number and role (primary / retry / fallback), failure class, cost, cache
and guardrail outcome. A caller's W3C ``traceparent`` makes the request span its
child, and every upstream call carries a ``traceparent`` naming its attempt
span, so a traced upstream joins the same trace. Spans go out over OTLP/HTTP
(protobuf) from the SDK's batch processor thread, never from the request path.

Turned on by the policy's ``telemetry: {traces: true}``, or, when ``traces`` is
unset, by the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variables; the other ``OTEL_*``
variables (headers, sampler, service name, resource attributes, batch sizes)
apply as the SDK reads them. Message content goes on the spans only with
``telemetry: {content: true}``.

The spans are built after the fact, in ``turnout_request_finished``, from the
request's attempt trail and its recorded times, so a request with tracing off
costs one dictionary look-up per attempt. The ids an upstream was told
(``turnout_upstream_headers``) are chosen up front and kept in the request's
scratch; the tracer provider's id generator hands them back when the spans
are built. This module imports without OpenTelemetry; the
SDK is imported when tracing is first turned on, and its absence is an error
naming ``pip install 'turnout[otel]'``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from turnout.plugin_api import Attempt, RequestContext, RequestOutcome, Telemetry, hookimpl

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

__all__ = [
    "INSTALL_HINT",
    "force_flush",
    "record_request",
    "traces_enabled",
    "turnout_request_finished",
    "turnout_upstream_headers",
]

log = structlog.get_logger("turnout.tracing")

INSTALL_HINT = "pip install 'turnout[otel]'"
SCOPE = "turnout"
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"

# gen_ai.provider.name for turnout's provider types (the semantic conventions' names)
_GENAI_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "cohere": "cohere",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
}


def traces_enabled(
    telemetry: Telemetry, env: dict[str, str] | os._Environ[str] = os.environ
) -> bool:
    """Whether a policy's ``telemetry`` section (or, unset, the environment) turns traces on."""
    if telemetry.traces is not None:
        return telemetry.traces
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class _Tracers:
    """One tracer per distinct ``telemetry`` section, built on first use and kept
    for the life of the process (the SDK flushes its batches at exit)."""

    def __init__(self) -> None:
        self._by_section: dict[int, tuple[Telemetry, Tracer | None]] = {}
        self._by_config: dict[tuple[Any, ...], Tracer] = {}
        self._providers: list[TracerProvider] = []
        self._lock = threading.Lock()

    def get(self, telemetry: Telemetry) -> Tracer | None:
        """The tracer for this section, or None when tracing is off."""
        entry = self._by_section.get(id(telemetry))
        if entry is not None and entry[0] is telemetry:
            return entry[1]
        with self._lock:
            tracer = self._build(telemetry) if traces_enabled(telemetry) else None
            if len(self._by_section) >= 64:  # policy reloads: keep the map small
                self._by_section.clear()
            self._by_section[id(telemetry)] = (telemetry, tracer)
        return tracer

    def _build(self, telemetry: Telemetry) -> Tracer:
        key = (telemetry.endpoint, tuple(sorted(telemetry.headers.items())), telemetry.service_name)
        tracer = self._by_config.get(key)
        if tracer is not None:
            return tracer
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise RuntimeError(
                f"tracing is on but the OpenTelemetry SDK is not installed: {INSTALL_HINT}"
            ) from exc
        attributes: dict[str, Any] = {}
        if telemetry.service_name is not None:
            attributes["service.name"] = telemetry.service_name
        elif not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "turnout"
        provider = TracerProvider(
            resource=Resource.create(attributes), id_generator=_preset_id_generator()
        )
        exporter = OTLPSpanExporter(
            endpoint=_traces_url(telemetry.endpoint) if telemetry.endpoint else None,
            headers=dict(telemetry.headers) or None,
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        self._providers.append(provider)
        tracer = self._by_config[key] = provider.get_tracer(SCOPE)
        return tracer

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(p.force_flush(timeout_millis) for p in list(self._providers))


def _traces_url(endpoint: str) -> str:
    """A bare collector address gets the OTLP/HTTP traces path."""
    scheme, _, rest = endpoint.partition("://")
    if "/" not in rest.rstrip("/"):
        return f"{scheme}://{rest.rstrip('/')}/v1/traces"
    return endpoint


_tracers = _Tracers()
_failed: set[str] = set()
_SCRATCH = "trace_ids"


@dataclasses.dataclass
class TraceIds:
    """The ids one request's spans will have, chosen when the first upstream
    call needed them: the trace, the caller's span (0: none), the flags and
    ``tracestate`` passed on, and the span id each upstream call was told, by
    ``(provider, model)`` in call order."""

    trace_id: int
    parent: int
    flags: int
    state: str | None
    attempts: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)

    def take(self, provider: str, model: str) -> int | None:
        """The span id told to the first call to that target not yet spent."""
        for index, (p, m, span_id) in enumerate(self.attempts):
            if p == provider and m == model:
                del self.attempts[index]
                return span_id
        return None

    def traceparent(self, span_id: int) -> str:
        return f"00-{self.trace_id:032x}-{span_id:016x}-{self.flags:02x}"


def trace_ids(headers: Mapping[str, str]) -> TraceIds:
    """Ids for a new request: the caller's trace when its ``traceparent`` is
    valid W3C trace context (read by the same propagator that parents the
    request span), else a new sampled trace."""
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    caller = get_current_span(TraceContextTextMapPropagator().extract(headers)).get_span_context()
    if caller.is_valid:
        state = caller.trace_state.to_header() or None
        return TraceIds(caller.trace_id, caller.span_id, int(caller.trace_flags), state)
    return TraceIds(random.getrandbits(128) or 1, 0, 1, None)


@hookimpl
def turnout_upstream_headers(ctx: RequestContext, attempt: Attempt) -> dict[str, str] | None:
    """A ``traceparent`` for each upstream call, naming the attempt span it will have."""
    try:
        tracer = _tracers.get(ctx.table.policy.telemetry)
    except RuntimeError:
        return None  # said once, by turnout_request_finished
    if tracer is None:
        return None
    ids = ctx.scratch.get(_SCRATCH)
    if ids is None:
        ids = ctx.scratch[_SCRATCH] = trace_ids(ctx.headers)
    span_id = random.getrandbits(64) or 1
    ids.attempts.append((attempt.provider, attempt.model, span_id))
    out = {"traceparent": ids.traceparent(span_id)}
    if ids.state:
        out["tracestate"] = ids.state
    return out


class _Preset(threading.local):
    """The ids the next spans built on this thread must have (None: random)."""

    trace_id: int | None = None
    span_id: int | None = None


_preset = _Preset()


def _preset_id_generator() -> Any:
    """An id generator that hands out the ids chosen up front (``_preset``),
    else random ones, as the SDK's own does."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class PresetIdGenerator(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            preset, _preset.trace_id = _preset.trace_id, None
            return preset if preset is not None else super().generate_trace_id()

        def generate_span_id(self) -> int:
            preset, _preset.span_id = _preset.span_id, None
            return preset if preset is not None else super().generate_span_id()

    return PresetIdGenerator()


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Export every span finished so far (e.g. before a test reads its collector)."""
    return _tracers.force_flush(timeout_millis)


@hookimpl
def turnout_request_finished(ctx: RequestContext, outcome: RequestOutcome) -> None:
    try:
        tracer = _tracers.get(ctx.table.policy.telemetry)
    except RuntimeError as exc:  # said once, not on every request
        if str(exc) not in _failed:
            _failed.add(str(exc))
            log.error("tracing is off", error=str(exc))
        return
    if tracer is not None:
        record_request(tracer, ctx, outcome, time.time_ns())


def record_request(
    tracer: Tracer, ctx: RequestContext, outcome: RequestOutcome, now_ns: int
) -> None:
    """Build one request's spans after the fact, with the times the engine recorded.

    The engine's clock may be any monotonic clock: its times are placed on the
    wall clock by one offset, the request having ended at ``now_ns``.
    """
    from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    offset = now_ns - (ctx.started + outcome.latency_ms / 1000) * 1e9
    request = ctx.request
    trail = ctx.trail
    served = trail[-1] if trail and outcome.status == "ok" and not outcome.short_circuit else None
    providers = ctx.table.policy.providers

    def genai_provider(name: str) -> str:
        config = providers.get(name)
        kind = config.type if config is not None else name
        return _GENAI_PROVIDERS.get(kind, kind)

    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": request.model,
        "turnout.route": ctx.route.name,
        "turnout.request_id": ctx.request_id,
        "turnout.stream": ctx.stream,
        "turnout.status": outcome.status,
        "turnout.attempts": len(trail),
        "http.response.status_code": outcome.status_code,
    }
    attributes.update(_request_options(request))
    response = outcome.response
    if served is not None:
        attributes["gen_ai.provider.name"] = genai_provider(served.provider)
        attributes["turnout.provider"] = served.provider
        attributes["gen_ai.response.model"] = (
            response.model if response is not None and response.model else served.model
        )
    if response is not None:
        attributes["gen_ai.response.id"] = response.id
        reasons = [c.finish_reason for c in response.choices if c.finish_reason]
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
    usage = outcome.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if outcome.cost is not None:
        attributes["turnout.cost_usd"] = outcome.cost
    cache = ctx.scratch.get("cache")
    if cache is None and outcome.short_circuit:
        cache = "short_circuit"
    if cache is not None:
        attributes["turnout.cache"] = str(cache)
    guardrail = ctx.scratch.get("guardrail")
    if guardrail:
        attributes["turnout.guardrail"] = (
            [str(g) for g in guardrail] if isinstance(guardrail, list) else str(guardrail)
        )
    error = outcome.error
    if outcome.status == "error":
        attributes["error.type"] = (error.code or error.type) if error is not None else "error"
    if ctx.table.policy.telemetry.content:
        attributes.update(content_attributes(ctx, outcome))

    parent = TraceContextTextMapPropagator().extract(ctx.headers) if ctx.headers else None
    ids: TraceIds | None = ctx.scratch.get(_SCRATCH)
    # the upstreams were told this trace: its spans get the ids they were told
    new_trace = ids.trace_id if ids is not None and not ids.parent else None
    span = _start_span(
        tracer,
        new_trace,
        None,
        f"chat {request.model}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        start_time=int(offset + ctx.started * 1e9),
    )
    if outcome.status == "error":
        span.set_status(StatusCode.ERROR, error.message if error is not None else None)
    end_ns = now_ns
    inside = set_span_in_context(span)
    previous: tuple[str, str] | None = None
    for number, record in enumerate(trail, 1):
        current = (record.provider, record.model)
        role = "primary" if previous is None else "retry" if current == previous else "fallback"
        previous = current
        ok = record.outcome == "ok"
        attempt: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": genai_provider(record.provider),
            "gen_ai.request.model": record.model,
            "turnout.provider": record.provider,
            "turnout.attempt.number": number,
            "turnout.attempt.role": role,
            "turnout.attempt.outcome": record.outcome,
        }
        if record.why:
            attempt["turnout.attempt.why"] = record.why
        if record.status_code is not None:
            attempt["http.response.status_code"] = record.status_code
        start = int(offset + record.started * 1e9)
        end = start + int(record.latency_ms * 1e6)
        if not ok:
            attempt["error.type"] = record.outcome
            attempt["turnout.failure_class"] = record.outcome
        elif record is served:
            attempt["gen_ai.response.model"] = attributes["gen_ai.response.model"]
            for key in (
                "gen_ai.response.id",
                "gen_ai.response.finish_reasons",
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
                "turnout.cost_usd",
            ):
                if key in attributes:
                    attempt[key] = attributes[key]
            if ctx.stream:  # the attempt's latency is the first token; it streamed on to the end
                attempt["turnout.time_to_first_token_ms"] = record.latency_ms
                end = max(end, end_ns)
        told = ids.take(record.provider, record.model) if ids is not None else None
        child = _start_span(
            tracer,
            None,
            told,
            f"chat {record.model}",
            context=inside,
            kind=SpanKind.CLIENT,
            attributes=attempt,
            start_time=start,
        )
        if not ok:
            child.set_status(StatusCode.ERROR, record.message)
        child.end(end_time=end)
    span.end(end_time=end_ns)


def _start_span(
    tracer: Tracer, trace_id: int | None, span_id: int | None, *args: Any, **kwargs: Any
) -> Any:
    """``tracer.start_span`` with the trace and span ids chosen up front (None: random)."""
    _preset.trace_id, _preset.span_id = trace_id, span_id
    try:
        return tracer.start_span(*args, **kwargs)
    finally:
        _preset.trace_id = _preset.span_id = None


def _request_options(request: Any) -> dict[str, Any]:
    """The ``gen_ai.request.*`` options the caller set."""
    out: dict[str, Any] = {}
    for field, key in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("seed", "gen_ai.request.seed"),
    ):
        value = getattr(request, field, None)
        if value is not None:
            out[key] = value
    return out


def content_attributes(ctx: RequestContext, outcome: RequestOutcome) -> dict[str, str]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` as JSON, for ``content: true``."""
    out = {
        "gen_ai.input.messages": json.dumps(
            [m.model_dump(exclude_none=True) for m in ctx.request.messages], default=str
        )
    }
    response = outcome.response
    if response is not None:
        out["gen_ai.output.messages"] = json.dumps(
            [c.message.model_dump(exclude_none=True) for c in response.choices], default=str
        )
    return out
