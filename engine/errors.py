"""Errors a user can see: a bad policy, a bad request, an upstream that failed.

Every error that reaches a caller carries an HTTP status and an OpenAI-style
``error`` object, so the gateway can serialise it without knowing its type.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FailureClass",
    "PolicyError",
    "Problem",
    "ProviderError",
    "TurnoutError",
]


class FailureClass(enum.StrEnum):
    """The closed set of ways an upstream attempt can fail.

    The executor decides retry / next attempt / stop from the class alone, so a
    provider plugin's only job on failure is to pick the right one.
    """

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    NOT_FOUND = "not_found"
    """The upstream does not have the model (or endpoint): this target is
    misconfigured, another may serve the request, so it falls back."""
    CANCELLED = "cancelled"

    @classmethod
    def from_status(cls, status: int) -> FailureClass:
        """The class an HTTP status implies when the body says nothing better."""
        if status == 429:
            return cls.RATE_LIMITED
        if status in (529, 503):
            return cls.OVERLOADED
        if status in (408, 504):
            return cls.TIMEOUT
        if status in (401, 403):
            return cls.AUTH
        if status == 413:
            return cls.CONTEXT_LENGTH
        if status == 404:
            return cls.NOT_FOUND
        if status >= 500:
            return cls.SERVER_ERROR
        return cls.BAD_REQUEST


# Failures that are the caller's fault: trying another target cannot help.
CALLER_FAULTS = frozenset({FailureClass.BAD_REQUEST, FailureClass.CANCELLED})

_STATUS_FOR_CLASS = {
    FailureClass.RATE_LIMITED: 429,
    FailureClass.OVERLOADED: 503,
    FailureClass.SERVER_ERROR: 502,
    FailureClass.TIMEOUT: 504,
    FailureClass.CONNECTION: 502,
    FailureClass.AUTH: 502,
    FailureClass.BAD_REQUEST: 400,
    FailureClass.CONTEXT_LENGTH: 400,
    FailureClass.CONTENT_FILTER: 400,
    FailureClass.NOT_FOUND: 404,
    FailureClass.CANCELLED: 499,
}


class TurnoutError(Exception):
    """An error returned to the caller, in the OpenAI error shape.

    :param message: what went wrong and, where possible, how to fix it.
    :param status_code: the HTTP status the gateway answers with.
    :param type: OpenAI ``error.type`` (``invalid_request_error``, ``api_error``, ...).
    :param code: a stable machine-readable code (``route_not_found``, ...).
    :param param: the request field at fault, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type
        self.code = code
        self.param = param
        self.extra_fields: dict[str, Any] = {}

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"error": {...}, "status_code": ..., "extra_fields": {...}}``."""
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            },
            "status_code": self.status_code,
            "extra_fields": self.extra_fields,
        }


class ProviderError(Exception):
    """Raised by a provider plugin when an upstream attempt fails.

    :param failure: the engine's failure class; decides retry and fallback.
    :param message: the upstream's own message, safe to show (no keys).
    :param status_code: the upstream HTTP status, if there was one.
    :param retry_after: seconds the upstream asked us to wait, if it said.
    """

    def __init__(
        self,
        failure: FailureClass,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.code = code

    def to_turnout_error(self, *, provider: str, model: str) -> TurnoutError:
        """The caller-facing form once no attempt is left."""
        status = _STATUS_FOR_CLASS[self.failure]
        if (
            self.failure in (FailureClass.BAD_REQUEST, FailureClass.CONTEXT_LENGTH)
            and self.status_code
        ):
            status = self.status_code if 400 <= self.status_code < 500 else status
        kind = "invalid_request_error" if status < 500 and status != 429 else "api_error"
        if self.failure is FailureClass.RATE_LIMITED:
            kind = "rate_limit_error"
        out = TurnoutError(
            f"{provider}/{model}: {self.message}",
            status_code=status,
            type=kind,
            code=self.code or self.failure.value,
        )
        if self.retry_after is not None:  # the gateway sends it on as Retry-After
            out.extra_fields["retry_after"] = max(1, math.ceil(self.retry_after))
        return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy file, with where it is and how to fix it."""

    message: str
    file: str = "<policy>"
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class PolicyError(Exception):
    """A policy that cannot be loaded; lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or 0))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in policy"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))
