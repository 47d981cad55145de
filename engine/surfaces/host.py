"""What a surface needs of the engine, as a protocol: surfaces sit under
``turnout.engine`` (which offers them as ``engine.responses``,
``engine.messages``, ``engine.embeddings`` and ``engine.completions``) and never import it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from turnout.policy.table import RoutingTable
    from turnout.run.ledger import BudgetLedger
    from turnout.run.operation import Operation, StreamOperation
    from turnout.run.streams import ChatStream
    from turnout.wire.chat import ChatRequest, ChatResponse

__all__ = ["ChatHost"]


class ChatHost(Protocol):
    """The engine's chat path (``turnout.Engine`` is one)."""

    @property
    def table(self) -> RoutingTable: ...

    ledger: BudgetLedger

    async def chat(
        self,
        request: ChatRequest,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        respond: Callable[[ChatResponse], Awaitable[None]] | None = None,
    ) -> ChatResponse: ...

    def stream(
        self,
        request: ChatRequest,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        op: StreamOperation[Any] | None = None,
    ) -> ChatStream: ...

    async def serve(
        self,
        request: Any,
        op: Operation[Any],
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        deliver: Callable[[Any], Awaitable[None]] | None = None,
        prompt_tokens: int | None = None,
    ) -> Any: ...

    def plan(self, request: Any, *, headers: Mapping[str, str] | None = None) -> Any: ...
