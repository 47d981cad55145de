"""A chat stream as the caller's Server-Sent Events bytes, for the gateway's relay.

When nothing on a route needs parsed chunks (no output guardrail, no cache, no
chunk hook that asks for them), the gateway relays an OpenAI-compatible
upstream's events as they came: one ``RelayedEvents`` per upstream read, its
events' bytes passed on unchanged. An event the relay must look into (usage,
a finish, an error, turnout's own ``extra_fields``, a policy secret) is read
into a ``ChatChunk`` and written again exactly as the parsed path writes it,
by ``ChunkRelay``; so is every chunk of a provider that does not relay bytes.

What the caller sees is what the parsed path sends: usage-only chunks dropped
unless the caller asked for ``stream_options.include_usage``, the policy's
secrets masked in fields turnout does not know, and the last chunk with
nothing to show (``held``) kept back so the gateway can put ``extra_fields``
on it once the stream has ended well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from turnout.wire.chat import ChatChunk, Usage

__all__ = ["ChunkRelay", "EventBatch", "RelayedEvents", "chunk_event", "is_tail"]

_NO_EXTRA = {"extra_fields"}


class _Redactor(Protocol):
    @property
    def secrets(self) -> tuple[str, ...]: ...

    def __bool__(self) -> bool: ...

    def json(self, value: Any) -> Any: ...


@dataclass(slots=True)
class RelayedEvents:
    """The caller's events from one upstream read.

    :param data: whole ``data: ...`` events to send now, in order (may be empty).
    :param held: the read's last event when it is a chunk with nothing to
        show (``is_tail``): sent after ``data``, with ``extra_fields`` when no
        other event follows it.
    :param usage: the usage the read reported, if any (the last one counts).
    """

    data: bytes
    held: ChatChunk | None = None
    usage: Usage | None = None


class EventBatch:
    """The caller's events of one read, as they are gathered (``relayed()`` when done)."""

    __slots__ = ("held", "parts", "usage")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.held: ChatChunk | None = None
        self.usage: Usage | None = None

    def __bool__(self) -> bool:
        return bool(self.parts) or self.held is not None or self.usage is not None

    def relayed(self) -> RelayedEvents:
        return RelayedEvents(b"".join(self.parts), self.held, self.usage)


def chunk_event(chunk: ChatChunk) -> bytes:
    """One chunk as the parsed path writes it (without ``extra_fields``)."""
    return b"data: " + chunk.model_dump_json(exclude=_NO_EXTRA).encode() + b"\n\n"


def is_tail(chunk: ChatChunk) -> bool:
    """A chunk with nothing to show: usage only, or finish reasons with empty deltas."""
    if not chunk.choices:
        return True
    for choice in chunk.choices:
        delta = choice.delta
        if choice.finish_reason is None or delta.content or delta.tool_calls or delta.refusal:
            return False
    return True


class ChunkRelay:
    """One stream's rules for what the caller gets, shared by every attempt.

    :param keep_usage: the caller asked for ``stream_options.include_usage``.
    :param redactor: masks the policy's secrets (false when there are none).
    """

    __slots__ = ("keep_usage", "redactor", "secrets")

    def __init__(self, keep_usage: bool, redactor: _Redactor) -> None:
        self.keep_usage = keep_usage
        self.redactor = redactor
        self.secrets: tuple[bytes, ...] = (
            tuple(secret.encode() for secret in redactor.secrets) if redactor else ()
        )
        """The secrets as bytes: an event holding one is read, not relayed as it is."""

    def holds_secret(self, event: bytes) -> bool:
        """Whether ``event``'s bytes may carry a secret (also: any ``\\u`` escape,
        which could spell one)."""
        secrets = self.secrets
        if not secrets:
            return False
        if b"\\u" in event:
            return True
        return any(secret in event for secret in secrets)

    def add(self, chunk: ChatChunk, batch: EventBatch) -> None:
        """Add a parsed chunk to ``batch``, as the parsed path would send it."""
        usage = chunk.usage
        if usage is not None:
            batch.usage = usage
            if not self.keep_usage and not chunk.choices:
                return  # asked upstream for cost; the caller did not ask
        redactor = self.redactor
        if redactor and chunk.__pydantic_extra__:
            chunk.__pydantic_extra__ = redactor.json(chunk.__pydantic_extra__)
        held = batch.held
        if held is not None:
            batch.parts.append(chunk_event(held))
            batch.held = None
        if is_tail(chunk):
            batch.held = chunk
        else:
            batch.parts.append(chunk_event(chunk))

    def add_bytes(self, event: bytes, batch: EventBatch) -> None:
        """Add an event passed on as it came (``data: ...`` without its blank line)."""
        held = batch.held
        if held is not None:
            batch.parts.append(chunk_event(held))
            batch.held = None
        batch.parts += (event, b"\n\n")

    async def relay(self, chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[RelayedEvents]:
        """A parsed stream (any provider's) as relayed events, one per chunk kept."""
        async for chunk in chunks:
            batch = EventBatch()
            self.add(chunk, batch)
            if batch:
                yield batch.relayed()
