"""A fake Azure OpenAI upstream: the fake OpenAI server behind Azure's addressing.

Azure serves OpenAI's chat-completions bodies, so only the request line and
the authentication are checked here, the way Azure answers them:

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``
  (or ``POST /openai/v1/chat/completions``, where the deployment is the body's
  ``model``); a missing ``api-version`` is a 404 ``Resource not found``, an
  unknown deployment a 404 ``DeploymentNotFound``;
- ``api-key: <key>`` or ``Authorization: Bearer <token>``; anything else is a
  401 with Azure's wording.

A request that passes is answered by the fake OpenAI upstream (faults,
scripts and ``x-fake-fault`` included). Error bodies are Azure's:
``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from typing import Any

from tests.fakes.openai_upstream import FakeOpenAI, RecordedRequest, _Upstream
from tests.fakes.openai_wire import Reply, error_reply

__all__ = ["ACCESS_DENIED", "FakeAzureOpenAI"]

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)


class _AzureUpstream(_Upstream):
    def __init__(self, base: _Upstream, keys: frozenset[str], deployments: frozenset[str]) -> None:
        self.__dict__.update(base.__dict__)
        self.keys = keys
        self.deployments = deployments

    def respond(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, keep_alive: bool
    ) -> Reply:
        """Check Azure's addressing and auth, then answer as the OpenAI fake would;
        ``requests`` records the Azure path either way."""
        problem = self._check(target, headers, keep_alive)
        if problem is not None:
            if self.settings.record:
                body = json.loads(raw) if raw else None
                self.requests.append(RecordedRequest(method, target, headers, body))
            return problem
        reply = super().respond(method, "/v1/chat/completions", headers, raw, keep_alive)
        if self.settings.record and self.requests:
            self.requests[-1] = self.requests[-1]._replace(path=target)
        return reply

    def _check(self, target: str, headers: dict[str, str], keep_alive: bool) -> Reply | None:
        path, _, query = target.partition("?")
        params = urllib.parse.parse_qs(query)
        version = params.get("api-version", [None])[0]
        parts = path.split("/")
        # ["", "openai", "deployments", name, "chat", "completions"] or ["", "openai", "v1", ...]
        deployment: str | None = None
        if (
            len(parts) == 6
            and parts[1:3] == ["openai", "deployments"]
            and parts[4:]
            == [
                "chat",
                "completions",
            ]
        ):
            deployment = urllib.parse.unquote(parts[3])
            if version is None:
                return self._error(404, "404", "Resource not found", keep_alive)
        elif path != "/openai/v1/chat/completions":
            return self._error(404, "404", "Resource not found", keep_alive)
        if not self._authorised(headers):
            return self._error(401, "401", ACCESS_DENIED, keep_alive)
        if deployment is not None and self.deployments and deployment not in self.deployments:
            message = (
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again."
            )
            return self._error(404, "DeploymentNotFound", message, keep_alive)
        return None

    def _authorised(self, headers: dict[str, str]) -> bool:
        key = headers.get("api-key")
        if key is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            key = token if scheme.lower() == "bearer" else None
        return key is not None and (not self.keys or key in self.keys)

    def _error(self, status: int, code: str, message: str, keep_alive: bool) -> Reply:
        body: dict[str, Any] = {"error": {"code": code, "message": message}}
        return error_reply(status, body, request_id="azure", keep_alive=keep_alive)


class FakeAzureOpenAI(FakeOpenAI):
    """The fake OpenAI upstream at Azure's paths; ``base_url`` is the resource root.

    :param keys: the accepted ``api-key`` / Bearer values (any key if empty).
    :param deployments: the deployments that exist (any name if empty).
    """

    def __init__(
        self, *, keys: Iterable[str] = (), deployments: Iterable[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._upstream = _AzureUpstream(self._upstream, frozenset(keys), frozenset(deployments))

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, what the ``azure`` provider takes as base_url."""
        return f"http://127.0.0.1:{self.port}"
