"""turnout's engine: routes.yaml → execution plan → plugin pipeline.

The public surface is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from .context import RequestContext, RequestOutcome
from .engine import Engine, parse_request
from .errors import FailureClass, PolicyError, Problem, ProviderError, TurnoutError
from .guardrail import Finding, Guardrail
from .hookspecs import hookimpl
from .plan import Attempt, Plan, Skip, SkipReason
from .plugins import PluginError, make_plugin_manager
from .provider import Provider, ProviderCall, ProviderSettings
from .schema import (
    AttemptRecord,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ExtraFields,
    Usage,
)
from .strategy import Ranking, Strategy, StrategyInput
from .streams import ChatStream

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
