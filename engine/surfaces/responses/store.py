"""Stored responses: what ``previous_response_id`` continues and ``GET`` reads.

One JSON document per response in the policy's state backend (memory, SQLite
or Redis, so replicas sharing Redis share conversations), expiring after
``state.responses_ttl``. A record keeps the response object, its input items
and the conversation so far as chat messages (input and output, without
``instructions``, which OpenAI does not carry over). With ``keys:`` on, a
record names the key that made it and no other key can see it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core
from turnout.state import StateBackend

__all__ = ["ConversationStore", "StoredResponse"]

_PREFIX = "resp:"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    owner: str | None = None


class ConversationStore:
    """Stored responses over a state backend's documents.

    :param ttl: seconds a response is kept after it was made.
    """

    def __init__(
        self, backend: StateBackend, ttl: float, *, wall: Callable[[], float] = time.time
    ) -> None:
        self.backend = backend
        self.ttl = ttl
        self.wall = wall

    async def save(self, record: StoredResponse) -> None:
        key = _PREFIX + record.response["id"]
        document = {
            "response": record.response,
            "input_items": record.input_items,
            "history": record.history,
            "owner": record.owner,
        }
        text = pydantic_core.to_json(document).decode()
        await self.backend.put_document(key, text, self.wall() + self.ttl)

    async def load(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The record, or None when it is unknown, expired, deleted or another key's."""
        raw = await self.backend.get_document(_PREFIX + response_id)
        if raw is None:
            return None
        record = StoredResponse(**json.loads(raw))
        return record if record.owner == owner else None

    async def delete(self, response_id: str, owner: str | None) -> bool:
        if await self.load(response_id, owner) is None:
            return False
        return await self.backend.delete_document(_PREFIX + response_id)
