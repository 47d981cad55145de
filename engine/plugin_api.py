"""Everything a hook plugin needs, in one public module.

The built-in plugins other than providers (``turnout.plugins.cache``,
``.guardrails``, ``.logging``, ``.metrics``, ``.strategies``) import only this
module and ``turnout`` itself, and so can a third-party plugin: the hook
marker and the registration callbacks' types, ``for_routes`` (the routes a
hook implementation applies to), the request context and
outcome, the strategy and guardrail bases, the compiled route a hook sees as
``ctx.route``, the wire models, the failure taxonomy, and the few helpers a
plugin would otherwise copy (durations, the prompt token estimate, bounded
metric labels, the gateway's buffered JSON log lines). Providers have their
own module, ``turnout.provider_api``.
See docs/plugins.md.
"""

from __future__ import annotations

from turnout.contract.guardrail import CompiledGuardrail, Finding, Guardrail
from turnout.contract.hookspecs import (
    RegisterGuardrail,
    RegisterProvider,
    RegisterStrategy,
    hookimpl,
)
from turnout.contract.route_hooks import for_routes
from turnout.contract.strategy import (
    Candidate,
    CandidateInfo,
    Ranking,
    Strategy,
    StrategyInput,
    weighted_order,
)
from turnout.errors import FailureClass, ProviderError, TurnoutError
from turnout.lines import LineBuffer, json_lines
from turnout.metrics import ModelLabels
from turnout.plain_metrics import Family, MetricSet
from turnout.policy.models import CacheConfig, Telemetry
from turnout.policy.table import CompiledRoute, CompiledTarget, RoutingTable
from turnout.policy.units import Duration, parse_duration
from turnout.routing.plan import Attempt, Plan
from turnout.routing.tokens import estimate_prompt_tokens
from turnout.run.context import RequestContext, RequestOutcome
from turnout.wire.chat import (
    AttemptRecord,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ExtraFields,
    ResponseMessage,
    Usage,
)

__all__ = [
    "Attempt",
    "AttemptRecord",
    "CacheConfig",
    "Candidate",
    "CandidateInfo",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChunkChoice",
    "CompiledGuardrail",
    "CompiledRoute",
    "CompiledTarget",
    "Delta",
    "Duration",
    "ExtraFields",
    "FailureClass",
    "Family",
    "Finding",
    "Guardrail",
    "LineBuffer",
    "MetricSet",
    "ModelLabels",
    "Plan",
    "ProviderError",
    "Ranking",
    "RegisterGuardrail",
    "RegisterProvider",
    "RegisterStrategy",
    "RequestContext",
    "RequestOutcome",
    "ResponseMessage",
    "RoutingTable",
    "Strategy",
    "StrategyInput",
    "Telemetry",
    "TurnoutError",
    "Usage",
    "estimate_prompt_tokens",
    "for_routes",
    "hookimpl",
    "json_lines",
    "parse_duration",
    "weighted_order",
]
