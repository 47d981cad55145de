"""Another request kind on the one serve path: a native passthrough operation
(here an embeddings-like call) gets planning, budgets, retries, fallbacks,
settlement and observers from the engine, and calls its own provider method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from turnout import Engine, TurnoutError, hookimpl
from turnout.contract.provider import Provider, ProviderCall
from turnout.errors import FailureClass, ProviderError
from turnout.policy.limits import RequestFacts
from turnout.routing.plan import Attempt, Plan
from turnout.run.account import WorstCase
from turnout.run.context import RequestContext, RequestOutcome
from turnout.run.operation import Operation, StreamOperation
from turnout.wire.chat import ChatResponse, ExtraFields, Usage

from tests.conftest import user


class Vectors(Provider):
    """A provider with a native operation besides chat."""

    free = True

    async def chat(self, call: ProviderCall) -> ChatResponse:
        raise AssertionError("the embeddings operation must not call chat()")

    async def embeddings(self, call: ProviderCall, inputs: list[str]) -> dict[str, Any]:
        tokens = sum(len(text.split()) for text in inputs)
        return {"model": call.model, "data": [[0.5] * 3 for _ in inputs], "tokens": tokens}

    async def embeddings_stream(self, call: ProviderCall, inputs: list[str]) -> Any:
        for i in range(len(inputs)):
            yield {"index": i, "vector": [0.5] * 3}
        yield {"tokens": sum(len(text.split()) for text in inputs)}


class DownVectors(Vectors):
    async def embeddings(self, call: ProviderCall, inputs: list[str]) -> dict[str, Any]:
        raise ProviderError(FailureClass.OVERLOADED, "busy")

    async def embeddings_stream(self, call: ProviderCall, inputs: list[str]) -> Any:
        raise ProviderError(FailureClass.OVERLOADED, "busy")
        yield  # an async generator that fails before its first chunk


class Embeddings(Operation[dict[str, Any]]):
    """The request kind a surface would write: the raw body rides on the instance."""

    request_type = "embeddings"

    def __init__(self, inputs: list[str]) -> None:
        self.inputs = inputs

    def call(self, provider: Provider, call: ProviderCall) -> Any:
        return provider.embeddings(call, self.inputs)  # type: ignore[attr-defined]

    def usage(self, result: dict[str, Any]) -> Usage:
        n = result["tokens"]
        return Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n)

    def worst_case(self, attempt: Attempt, plan: Plan) -> WorstCase:
        return WorstCase(plan.prompt_tokens, attempt.target.info.cost(plan.prompt_tokens, 0))

    async def accept(
        self,
        ctx: RequestContext,
        attempt: Attempt,
        result: dict[str, Any],
        fields: ExtraFields,
        hook: Any,
    ) -> dict[str, Any]:
        return {**result, "extra_fields": fields}

    def short_circuit(self, response: ChatResponse) -> dict[str, Any]:
        raise TurnoutError("no short-circuit for embeddings", status_code=500)


class StreamedEmbeddings(StreamOperation[dict[str, Any]]):
    """A streamed native kind: vectors one by one, usage in the last chunk."""

    request_type = "embeddings_stream"

    def __init__(self, inputs: list[str]) -> None:
        self.inputs = inputs

    def open(self, provider: Provider, call: ProviderCall) -> Any:
        return provider.embeddings_stream(call, self.inputs)  # type: ignore[attr-defined]

    def usage(self, chunk: dict[str, Any]) -> Usage | None:
        n = chunk.get("tokens")
        return None if n is None else Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n)

    def worst_case(self, attempt: Attempt, plan: Plan) -> WorstCase:
        return WorstCase(plan.prompt_tokens, attempt.target.info.cost(plan.prompt_tokens, 0))

    def relay(self, ctx: RequestContext, hook: Any) -> Any:
        async def relay(chunk: dict[str, Any]) -> dict[str, Any] | None:
            return chunk if "vector" in chunk else None  # usage stays with turnout

        return relay


class Plugin:
    def __init__(self) -> None:
        self.finished: list[RequestOutcome] = []
        self.post_response = 0

    @hookimpl
    def turnout_register_providers(self, register: Callable[..., None]) -> None:
        register("vectors", Vectors)
        register("vectors-down", DownVectors)

    @hookimpl
    def turnout_post_response(self, response: ChatResponse) -> None:
        self.post_response += 1

    @hookimpl
    def turnout_request_finished(self, outcome: RequestOutcome) -> None:
        self.finished.append(outcome)


POLICY = """
version: 1
providers:
  down: {type: vectors-down}
  vec: {type: vectors}
models:
  down/e: {input_per_mtok: 1000, output_per_mtok: 1000}
  vec/e: {input_per_mtok: 1000, output_per_mtok: 1000}
routes:
  - name: embed
    match: {model: embed}
    targets: [down/e]
    fallbacks: [vec/e]
    retry: {attempts: 1}
    budget: {limit: 1.00, window: day}
"""


async def test_a_native_operation_falls_back_settles_and_is_observed(
    make_engine: Callable[..., Engine],
) -> None:
    plugin = Plugin()
    engine = make_engine(POLICY, plugins=[plugin])
    # the planning view: no max_tokens, which the chat worst case could not bound
    answer = await engine.serve(user("one two three four", model="embed"), Embeddings(["a b c d"]))
    assert answer["model"] == "e" and len(answer["data"]) == 1
    fields = answer["extra_fields"]
    assert fields.request_type == "embeddings"
    assert [(a.provider, a.outcome) for a in fields.attempts] == [
        ("down", "overloaded"),
        ("vec", "ok"),
    ]
    assert fields.cost == pytest.approx(0.004)  # 4 tokens at $1000 per million
    rows = await engine.ledger.status(engine.table.limits, RequestFacts("embed"))  # type: ignore[arg-type]
    (row,) = [r for r in rows if r["scope"] == "route"]
    assert (row["spent"], row["reserved"]) == (pytest.approx(0.004), 0)
    assert plugin.post_response == 0  # the chat post-response hooks are chat's
    (outcome,) = plugin.finished
    assert outcome.status == "ok" and outcome.cost == pytest.approx(0.004)
    assert outcome.usage is not None and outcome.usage.prompt_tokens == 4


async def test_a_native_operation_that_every_target_fails_raises_the_route_error(
    make_engine: Callable[..., Engine],
) -> None:
    plugin = Plugin()
    engine = make_engine(POLICY.replace("fallbacks: [vec/e]", "fallbacks: []"), plugins=[plugin])
    with pytest.raises(TurnoutError) as caught:
        await engine.serve(user("x", model="embed"), Embeddings(["x"]))
    assert caught.value.status_code == 503
    rows = await engine.ledger.status(engine.table.limits, RequestFacts("embed"))  # type: ignore[arg-type]
    (row,) = [r for r in rows if r["scope"] == "route"]
    assert (row["spent"], row["reserved"]) == (0, 0)  # the hold was released
    assert [o.status for o in plugin.finished] == ["error"]


async def test_a_native_stream_falls_back_before_its_first_chunk_and_settles(
    make_engine: Callable[..., Engine],
) -> None:
    plugin = Plugin()
    engine = make_engine(POLICY, plugins=[plugin])
    stream = engine.stream(user("a b", model="embed"), op=StreamedEmbeddings(["a b", "c d"]))
    chunks = [chunk async for chunk in stream]
    assert [c["index"] for c in chunks] == [0, 1]  # type: ignore[index]
    fields = stream.extra_fields
    assert fields is not None and fields.request_type == "embeddings_stream"
    assert [a.outcome for a in stream.trail] == ["overloaded", "ok"]
    assert fields.cost == pytest.approx(0.004)
    rows = await engine.ledger.status(engine.table.limits, RequestFacts("embed"))  # type: ignore[arg-type]
    (row,) = [r for r in rows if r["scope"] == "route"]
    assert (row["spent"], row["reserved"]) == (pytest.approx(0.004), 0)
    assert [o.status for o in plugin.finished] == ["ok"]
