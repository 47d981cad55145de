"""turnout's engine: routes.yaml → execution plan → plugin pipeline.

The public surface is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from turnout.contract.guardrail import Finding, Guardrail
from turnout.contract.hookspecs import hookimpl
from turnout.contract.provider import Provider, ProviderCall, ProviderSettings
from turnout.contract.registry import PluginError, make_plugin_manager
from turnout.contract.strategy import Ranking, Strategy, StrategyInput
from turnout.engine import Engine, parse_request
from turnout.errors import FailureClass, PolicyError, Problem, ProviderError, TurnoutError
from turnout.routing.plan import Attempt, Plan, Skip, SkipReason
from turnout.run.context import RequestContext, RequestOutcome
from turnout.run.streams import ChatStream
from turnout.wire.chat import (
    AttemptRecord,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ExtraFields,
    Usage,
)

__all__ = [
    "Attempt",
    "AttemptRecord",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "Engine",
    "ExtraFields",
    "FailureClass",
    "Finding",
    "Guardrail",
    "Plan",
    "PluginError",
    "PolicyError",
    "Problem",
    "Provider",
    "ProviderCall",
    "ProviderError",
    "ProviderSettings",
    "Ranking",
    "RequestContext",
    "RequestOutcome",
    "Skip",
    "SkipReason",
    "Strategy",
    "StrategyInput",
    "TurnoutError",
    "Usage",
    "hookimpl",
    "make_plugin_manager",
    "parse_request",
]
