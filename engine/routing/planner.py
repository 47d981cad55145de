"""request + routing table + state snapshot + rng → Plan. Pure: no I/O, no clock."""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import cast

from turnout.contract.strategy import StrategyInput, weighted_index, weighted_order
from turnout.errors import TurnoutError
from turnout.policy.limits import ApiKeyInfo
from turnout.policy.table import CompiledRoute, CompiledTarget, RoutingTable
from turnout.routing.plan import Attempt, Plan, Role, Skip, SkipReason
from turnout.routing.tokens import estimate_prompt_tokens
from turnout.state import EMPTY_STATE, StateSnapshot
from turnout.wire.chat import ChatRequest

__all__ = ["NoRouteError", "plan_request", "restrict"]

_NO_HEADERS: Mapping[str, str] = {}


class NoRouteError(TurnoutError):
    def __init__(self, model: str, known: Iterable[str] = ()) -> None:
        close = difflib.get_close_matches(str(model), sorted(set(known)), n=1)
        super().__init__(
            f"no route matches model {model!r}; "
            + (f"did you mean {close[0]!r}? " if close else "")
            + "use a route alias from the policy or a "
            "provider/model name of a configured provider",
            status_code=404,
            code="model_not_found",
            param="model",
        )


Candidate = tuple["CompiledTarget | str", Role, int]


def _ranked(
    route: CompiledRoute,
    given: Callable[[], StrategyInput] | None,
    rng: random.Random,
    notes: dict[str, str],
) -> list[CompiledTarget]:
    if len(route.targets) == 1:
        return [route.targets[0]]
    if route.weighted:  # the default, kept off the generic path: its note comes lazily
        return weighted_order(route.targets, rng)
    assert given is not None
    ranking = route.strategy.rank(route.targets, given())
    notes.update(ranking.notes)
    # a strategy returns the very targets it was given (Strategy.rank's contract)
    return cast("list[CompiledTarget]", ranking.targets)


def _candidates(
    request: ChatRequest,
    route: CompiledRoute,
    table: RoutingTable,
    given: Callable[[], StrategyInput] | None,
    rng: random.Random,
    notes: dict[str, str],
) -> list[Candidate]:
    if route.direct:
        direct = table.target(request.model)
        out: list[Candidate] = [(direct if direct is not None else request.model, Role.DIRECT, 0)]
    else:
        ranked = _ranked(route, given, rng, notes)
        out = [(t, Role.PICKED if i == 0 else Role.TARGET, i) for i, t in enumerate(ranked)]
    requested = request.fallbacks
    if route.fallbacks and (not requested or route.request_fallbacks != "replace"):
        out += [(t, Role.FALLBACK, i) for i, t in enumerate(route.fallbacks)]
    if not requested or route.request_fallbacks == "ignore":
        return out
    for i, name in enumerate(requested):
        target = table.target(name)
        out.append((target if target is not None else name, Role.REQUEST_FALLBACK, i))
    return out


def _not_allowed(
    key: ApiKeyInfo,
    name: str,
    request: ChatRequest,
    table: RoutingTable,
    headers: Mapping[str, str],
    prompt_tokens: int,
) -> str | None:
    """Why ``key`` may not have the request fallback ``name``, or None when it may:
    a key gets only what it could have asked for itself (the route that would
    serve ``name`` is among its ``routes``, and ``name`` matches its ``models``)."""
    entry = key.entry
    route = None
    if entry.routes is not None:
        route = table.match(request.model_copy(update={"model": name}), headers, prompt_tokens)
    if key.allows(route.name if route is not None else "", name):
        return None
    return f"API key {key.name!r} may not use model {name!r}" + (
        f" (route {route.name!r})" if route is not None else ""
    )


def _pick_key(weights: tuple[float, ...], rng: random.Random) -> int | None:
    if not weights:
        return None
    return 0 if len(weights) == 1 else weighted_index(weights, rng)


def plan_request(
    request: ChatRequest,
    table: RoutingTable,
    *,
    headers: Mapping[str, str] | None = None,
    state: StateSnapshot = EMPTY_STATE,
    rng: random.Random | None = None,
    prompt_tokens: int | None = None,
    key: ApiKeyInfo | None = None,
) -> Plan:
    """Resolve ``request`` into an ordered, explained list of attempts.

    The same inputs and the same rng state give the same plan. Raises
    NoRouteError (404) when no route matches. A plan may have no attempts; the
    executor turns that into the right error (see ``Plan.explain``).

    :param key: the authenticated caller; a request fallback it could not have
        asked for itself is skipped (``not_allowed``). The route's own targets
        and fallbacks are the policy's, allowed with the route.
    """
    rng = rng or random.Random()
    if prompt_tokens is None:
        prompt_tokens = estimate_prompt_tokens(request)
    headers = headers or _NO_HEADERS
    route = table.match(request, headers, prompt_tokens)
    if route is None:
        aliases = (name for r in table.routes if r.matcher.model for name in r.matcher.model.exact)
        raise NoRouteError(request.model, aliases)
    output_limit = request.output_limit
    notes: dict[str, str] = {}

    given: Callable[[], StrategyInput] | None = None  # only strategies other than weighted read it
    if not route.weighted and len(route.targets) > 1:
        given = partial(
            StrategyInput, request, headers, prompt_tokens, output_limit, rng, state.stats
        )

    cap = route.cost_cap
    open_circuits = state.open_circuits
    attempts: list[Attempt] = []
    skipped: list[Skip] = []
    seen: set[str] = set()
    checked = key if key is not None and key.restricted else None
    for target, role, position in _candidates(request, route, table, given, rng, notes):
        if checked is not None and role is Role.REQUEST_FALLBACK:
            name = target if isinstance(target, str) else target.name
            why_not = _not_allowed(checked, name, request, table, headers, prompt_tokens)
            if why_not is not None:
                skipped.append(Skip(name, role, SkipReason.NOT_ALLOWED, why_not))
                continue
        if isinstance(target, str):
            skipped.append(
                Skip(
                    target,
                    role,
                    SkipReason.UNKNOWN_PROVIDER,
                    f"no provider named {target.partition('/')[0]!r} in the policy",
                )
            )
            continue
        name = target.name
        if name in seen:
            if role is Role.REQUEST_FALLBACK or role is Role.FALLBACK:
                skipped.append(Skip(name, role, SkipReason.DUPLICATE, "already considered above"))
            continue
        seen.add(name)
        provider = target.provider
        if provider.disabled is not None:
            skipped.append(Skip(name, role, SkipReason.PROVIDER_DISABLED, provider.disabled))
            continue
        if open_circuits and (name in open_circuits or provider.name in open_circuits):
            skipped.append(Skip(name, role, SkipReason.CIRCUIT_OPEN, "circuit breaker is open"))
            continue
        if state.rate_limited and name in state.rate_limited:
            skipped.append(Skip(name, role, SkipReason.RATE_LIMITED, state.rate_limited[name]))
            continue
        info = target.info
        sent = provider.provider.output_ceiling(request, target.model)
        ceiling = None if sent == output_limit else sent
        window = info.context_window
        if window is not None and prompt_tokens + (output_limit or 0) > window:
            skipped.append(
                Skip(
                    name,
                    role,
                    SkipReason.CONTEXT_WINDOW,
                    f"needs ≈{prompt_tokens + (output_limit or 0)} tokens, "
                    f"context window is {window}",
                )
            )
            continue
        estimate = None
        if cap is not None or info.priced:
            bound = info.output_bound(prompt_tokens, sent)
            estimate = info.worst_case_cost(prompt_tokens, bound)
            if cap is not None:
                if estimate is None:
                    skipped.append(
                        Skip(
                            name,
                            role,
                            SkipReason.COST_CAP,
                            "worst case cannot be bounded: no price, or no output limit "
                            "(set max_tokens)",
                        )
                    )
                    continue
                if estimate > cap:
                    detail = f"worst case ${estimate:.6f} > cap ${cap:g}"
                    if sent is None:
                        detail += f" (assumes {bound} output tokens; set max_tokens to lower it)"
                    elif ceiling is not None:
                        detail += f" ({provider.name} sends max_tokens {sent})"
                    skipped.append(Skip(name, role, SkipReason.COST_CAP, detail))
                    continue
        attempts.append(
            Attempt(
                target=target,
                role=role,
                position=position,
                note=notes.get(name),
                key_index=_pick_key(provider.key_weights, rng),
                estimated_cost=estimate,
                output_ceiling=ceiling,
            )
        )
    return Plan(
        route,
        request.model,
        tuple(attempts),
        tuple(skipped),
        prompt_tokens,
        output_limit,
        notes.get("*"),
    )


def restrict(plan: Plan, state: StateSnapshot) -> Plan:
    """``plan`` without the attempts that live state rules out, each moved to
    ``skipped`` with its reason (open circuit, rate limit, budget). Pure; the
    order and picks of the remaining attempts are kept."""
    attempts: list[Attempt] = []
    skipped = list(plan.skipped)
    for attempt in plan.attempts:
        name = attempt.name
        if name in state.open_circuits or attempt.provider in state.open_circuits:
            skipped.append(
                Skip(name, attempt.role, SkipReason.CIRCUIT_OPEN, "circuit breaker is open")
            )
        elif name in state.rate_limited:
            skipped.append(
                Skip(name, attempt.role, SkipReason.RATE_LIMITED, state.rate_limited[name])
            )
        elif name in state.over_budget:
            skipped.append(Skip(name, attempt.role, SkipReason.BUDGET, state.over_budget[name]))
        else:
            attempts.append(attempt)
    return Plan(
        plan.route,
        plan.model_requested,
        tuple(attempts),
        tuple(skipped),
        plan.prompt_tokens,
        plan.output_limit,
        plan.strategy_note,
    )
