"""A fake Azure OpenAI upstream: the fake OpenAI server behind Azure's addressing.

Azure serves OpenAI's chat-completions bodies, so only the request line and
the authentication are checked here, the way Azure answers them:

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``
  (or ``POST /openai/v1/chat/completions``, where the deployment is the body's
  ``model``), and the same for ``/embeddings``, where the deployment path's
  body may leave ``model`` out; a missing ``api-version`` is a 404 ``Resource not found``, an
  unknown deployment a 404 ``DeploymentNotFound``;
- ``api-key: <key>`` or ``Authorization: Bearer <token>``; anything else is a
  401 with Azure's wording.

A request that passes is answered by the fake OpenAI upstream (faults,
scripts and ``x-fake-fault`` included). Error bodies are Azure's:
``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import Reply
from tests.fakes.upstream import Call

__all__ = ["ACCESS_DENIED", "FakeAzureOpenAI"]

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)


class FakeAzureOpenAI(FakeOpenAI):
    """The fake OpenAI upstream at Azure's paths; ``base_url`` is the resource root.

    :param keys: the accepted ``api-key`` / Bearer values (any key if empty).
    :param deployments: the deployments that exist (any name if empty).
    """

    base_path = ""

    def __init__(
        self, *, keys: Iterable[str] = (), deployments: Iterable[str] = (), **options: Any
    ) -> None:
        super().__init__(**options)
        self.keys = frozenset(keys)
        self.deployments = frozenset(deployments)

    def answer(self, call: Call) -> Reply:
        """Check Azure's addressing and auth, then answer as the OpenAI fake would;
        ``requests`` records the Azure path either way."""
        problem = self._check(call)
        if problem is not None:
            return problem
        if not call.path.endswith("/embeddings"):
            return super().answer(call.but(target="/v1/chat/completions"))
        if isinstance(call.body, dict) and "model" not in call.body:
            deployment = urllib.parse.unquote(call.path.split("/")[3])
            call = call.but(body={**call.body, "model": deployment})
        return super().answer(call.but(target="/v1/embeddings"))

    def _check(self, call: Call) -> Reply | None:
        params = urllib.parse.parse_qs(call.query)
        version = params.get("api-version", [None])[0]
        parts = call.path.split("/")
        # ["", "openai", "deployments", name, "chat", "completions"] or ["", "openai", "v1", ...]
        deployment: str | None = None
        if parts[1:3] == ["openai", "deployments"] and (
            (len(parts) == 6 and parts[4:] == ["chat", "completions"])
            or (len(parts) == 5 and parts[4] == "embeddings")
        ):
            deployment = urllib.parse.unquote(parts[3])
            if version is None:
                return self._azure_error(call, 404, "404", "Resource not found")
        elif call.path not in ("/openai/v1/chat/completions", "/openai/v1/embeddings"):
            return self._azure_error(call, 404, "404", "Resource not found")
        if not self._authorised(call.headers):
            return self._azure_error(call, 401, "401", ACCESS_DENIED)
        if deployment is not None and self.deployments and deployment not in self.deployments:
            message = (
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again."
            )
            return self._azure_error(call, 404, "DeploymentNotFound", message)
        return None

    def _authorised(self, headers: dict[str, str]) -> bool:
        key = headers.get("api-key")
        if key is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            key = token if scheme.lower() == "bearer" else None
        return key is not None and (not self.keys or key in self.keys)

    def _azure_error(self, call: Call, status: int, code: str, message: str) -> Reply:
        body: dict[str, Any] = {"error": {"code": code, "message": message}}
        return self.reject(call, status, body)
