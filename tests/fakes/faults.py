"""Fault injection for fake upstreams: what one request should suffer.

A `Fault` is scripted in a test (`fake.script(Fault.status(503))`) or named in a
request's `x-fake-fault` header with the mini-language that `Fault.parse` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_HEADER", "Fault", "parse_duration"]

FAULT_HEADER = "x-fake-fault"


def parse_duration(text: str | float) -> float:
    """Seconds from `0.2`, `"200ms"`, `"1.5s"` or `"1m"`."""
    if isinstance(text, int | float):
        return float(text)
    value = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value)


@dataclass(frozen=True, slots=True)
class Fault:
    """One request's behaviour. Build with the constructors, not directly."""

    kind: str
    code: int = 200
    retry_after: float | str | None = None
    body: Any = None
    seconds: float = 0.0

    KINDS = (
        "ok", "status", "delay", "chunk_delay", "reset", "reset_mid_body",
        "malformed_json", "error_body_200", "truncated_stream", "stall_after_first",
    )  # fmt: skip

    @classmethod
    def ok(cls) -> Fault:
        """Plain success (useful in a script between faults)."""
        return cls("ok")

    @classmethod
    def status(cls, code: int, retry_after: float | str | None = None, body: Any = None) -> Fault:
        """An error status with an OpenAI error body (or `body`: a dict is sent as
        JSON, str/bytes verbatim) and a `Retry-After` header when given."""
        if not 100 <= code <= 599:
            raise ValueError(f"status code out of range: {code}")
        return cls("status", code=code, retry_after=retry_after, body=body)

    @classmethod
    def delay(cls, seconds: float | str) -> Fault:
        """Wait before sending the response headers, then succeed."""
        return cls("delay", seconds=parse_duration(seconds))

    @classmethod
    def chunk_delay(cls, seconds: float | str) -> Fault:
        """Stream successfully with a pause before every SSE event."""
        return cls("chunk_delay", seconds=parse_duration(seconds))

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection with a TCP RST before any response byte."""
        return cls("reset")

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Send the headers and about half of the body, then RST."""
        return cls("reset_mid_body")

    @classmethod
    def malformed_json(cls) -> Fault:
        """200 with invalid JSON (for a stream: one SSE event whose data is invalid)."""
        return cls("malformed_json")

    @classmethod
    def error_body_200(cls) -> Fault:
        """200 whose JSON (or first SSE event) is an `{"error": {...}}` object."""
        return cls("error_body_200")

    @classmethod
    def truncated_stream(cls) -> Fault:
        """Send the first SSE events, then close cleanly in the middle of the next
        one: no `[DONE]`, no final chunk of the chunked body. Non-streaming
        requests get half of their Content-Length body before the close."""
        return cls("truncated_stream")

    @classmethod
    def stall_after_first(cls) -> Fault:
        """Send the headers and the first SSE event (half the body when not
        streaming), then nothing until the client leaves or the server stops."""
        return cls("stall_after_first")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the `x-fake-fault` mini-language: `kind[:arg][,key=value]`.

        `ok`, `status:503`, `status:429,retry_after=2`, `delay:200ms`,
        `chunk_delay:0.05`, `reset`, `reset_mid_body`, `malformed_json`,
        `error_body_200`, `truncated_stream`, `stall_after_first`.
        """
        head, *options = [part.strip() for part in spec.strip().split(",")]
        kind, _, arg = (p.strip() for p in head.partition(":"))
        kind = kind.lower().replace("-", "_")
        if kind not in cls.KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {', '.join(cls.KINDS)}")
        extra = dict(opt.partition("=")[::2] for opt in options if opt)
        try:
            if kind == "status":
                retry_after = extra.pop("retry_after", None)
                fault = cls.status(int(arg), retry_after=_number_or_text(retry_after))
            elif kind in ("delay", "chunk_delay"):
                fault = getattr(cls, kind)(arg)
            else:
                if arg:
                    raise ValueError(f"fault {kind!r} takes no argument")
                fault = cls(kind)
        except ValueError as exc:
            raise ValueError(f"bad fault {spec!r}: {exc}") from None
        if extra:
            raise ValueError(f"bad fault {spec!r}: unknown option(s) {', '.join(extra)}")
        return fault

    def __str__(self) -> str:
        if self.kind == "status":
            tail = "" if self.retry_after is None else f",retry_after={self.retry_after}"
            return f"status:{self.code}{tail}"
        if self.kind in ("delay", "chunk_delay"):
            return f"{self.kind}:{self.seconds * 1000:g}ms"
        return self.kind


def _number_or_text(value: str | None) -> float | str | None:
    if value is None:
        return None
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value
