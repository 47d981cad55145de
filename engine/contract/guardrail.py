"""Guardrails: checks a route runs on a request's input, its output, or both.

A guardrail is a plugin type like a strategy: a small class registered with
``turnout_register_guardrails`` and named per route in routes.yaml
(``guardrails: [pii, {type: deny, patterns: ["(?i)internal only"]}]``). The
engine compiles each route's list once, validating every guardrail's options
with its ``Options`` model (file:line errors); the ``turnout.plugins.guardrails``
plugin runs them and takes the configured action: ``block``, ``redact`` or
``log`` (or, for output that fails a check, ``retry`` the attempt or
``fallback`` to the next one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from turnout.wire.chat import ChatRequest

__all__ = ["CompiledGuardrail", "Direction", "Finding", "Guardrail", "GuardrailAction"]

Direction = Literal["input", "output", "both"]
GuardrailAction = Literal["block", "redact", "log", "retry", "fallback"]
"""``retry`` / ``fallback``: count the attempt as failed (output checks only)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a guardrail found in a text.

    :param kind: what it is, upper-case (``EMAIL``, ``AWS_SECRET_KEY``): names
        the redaction placeholder (``[EMAIL_1]``) and the error message.
    :param start: offset of the first character in the text scanned.
    :param end: offset just past the last character.
    """

    kind: str
    start: int
    end: int


class Guardrail:
    """Base class of guardrails. Override what applies; the defaults find nothing.

    ``Options`` (a pydantic model, optional) validates the guardrail's options in
    routes.yaml at load time. Class attributes give what a route gets when it
    says nothing: ``default_on`` and ``default_action``; ``actions`` lists the
    actions the guardrail supports. Constructors must do no I/O; methods must be
    pure and fast (they run on every request of the route).
    """

    Options: ClassVar[type[BaseModel] | None] = None
    default_on: ClassVar[Direction] = "both"
    default_action: ClassVar[GuardrailAction] = "block"
    actions: ClassVar[tuple[GuardrailAction, ...]] = ("block", "redact", "log")

    def __init__(self, options: Any = None) -> None:
        self.options = options

    def scan(self, text: str) -> list[Finding]:
        """Spans of ``text`` that violate the guardrail: one message's content, or
        one tool call's arguments (JSON text) or function name."""
        return []

    def check_request(self, request: ChatRequest) -> str | None:
        """A violation of the request as a whole (sizes, counts), or None.

        Runs on input only, before ``scan``; a violation cannot be redacted.
        """
        return None

    def check_output(self, text: str, request: ChatRequest) -> str | None:
        """A violation of one complete output text (e.g. not the JSON asked for), or None."""
        return None


@dataclass(frozen=True, slots=True)
class CompiledGuardrail:
    """One guardrail of a route, as compiled: what runs where, and what it does."""

    name: str
    guardrail: Guardrail
    on: Direction
    action: GuardrailAction

    @property
    def input(self) -> bool:
        return self.on != "output"

    @property
    def output(self) -> bool:
        return self.on != "input"
