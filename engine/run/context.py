"""Per-request state that hooks see: the request, its plan, and what happened."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from turnout.wire.chat import AttemptRecord, ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from turnout.errors import TurnoutError
    from turnout.policy.limits import ApiKeyInfo
    from turnout.policy.table import CompiledRoute, RoutingTable
    from turnout.routing.plan import Attempt, Plan

__all__ = ["RequestContext", "RequestOutcome"]


@dataclass(slots=True, eq=False)
class RequestContext:
    """One request on its way through the engine.

    :param request: the validated request; a pre-request hook may replace it.
    :param headers: the caller's HTTP headers, lower-cased (empty in-process).
    :param table: the policy snapshot this request uses for every attempt.
    :param plan: the plan in force; once the request has started, as budgets
        and breakers left it (the serve path sets it, before any hook runs).
    :param attempt: the attempt being made or that served, once there is one.
    :param trail: one record per upstream call made so far.
    :param scratch: free space for plugins, keyed by plugin name.
    :param cache: what a response cache made of this request: ``hit``, ``miss``
        or ``bypass`` (None: no cache applies); the gateway sends it as
        ``X-Turnout-Cache`` and the request log records it.
    """

    request: ChatRequest
    request_id: str
    headers: Mapping[str, str]
    table: RoutingTable
    plan: Plan
    started: float
    stream: bool = False
    attempt: Attempt | None = None
    trail: list[AttemptRecord] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    key: ApiKeyInfo | None = None
    """The caller's gateway API key (never the key itself), when ``keys:`` is on."""

    @property
    def route(self) -> CompiledRoute:
        return self.plan.route


@dataclass(slots=True, eq=False)
class RequestOutcome:
    """How a request ended, for observers.

    :param status: ``ok``, ``error`` or ``cancelled``.
    :param response: the answer, when it was served whole; for an embeddings
        request an ``object: "list"`` response with no choices, the vectors in
        its ``data`` field (``turnout.surfaces.embeddings``).
    :param short_circuit: a pre-request hook answered (no upstream call).
    """

    status: str
    status_code: int
    latency_ms: float
    response: ChatResponse | None = None
    error: TurnoutError | None = None
    usage: Usage | None = None
    cost: float | None = None
    short_circuit: bool = False
