"""A client that leaves cancels its request: driven by the connection, no task per request.

Under ``turnout serve`` the protocol (``turnout.http.protocol``) puts a
``ConnectionWatch`` in each request's ASGI scope (``scope["extensions"]
["turnout.disconnect"]``); ``connection_lost`` cancels the task armed on it.
Under another ASGI server there is none, and ``DisconnectWatch`` falls back to
a task awaiting ``http.disconnect`` (``turnout.http.sse.cancel_on_disconnect``).
Either way the request is cancelled exactly when the client leaves between
``DisconnectWatch(...)`` (the body read) and ``cancel()`` (the answer
complete); a disconnect after that is only the end of the response.
"""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.http import sse
from turnout.http.asgi import Receive, Scope

__all__ = ["EXTENSION", "ConnectionWatch", "DisconnectWatch"]

EXTENSION = "turnout.disconnect"


class ConnectionWatch:
    """Per connection: the request task to cancel if the connection is lost."""

    __slots__ = ("cancelled", "lost", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.cancelled: asyncio.Task[Any] | None = None
        """The task a lost connection cancelled."""
        self.lost = False

    def arm(self, task: asyncio.Task[Any]) -> None:
        if self.lost:  # gone already, before the work began
            self.cancelled = task
            task.cancel()
        else:
            self.task = task

    def disarm(self, task: asyncio.Task[Any]) -> None:
        if self.task is task:
            self.task = None

    def connection_lost(self) -> None:
        self.lost = True
        task, self.task = self.task, None
        if task is not None:
            self.cancelled = task
            task.cancel()


class DisconnectWatch:
    """Cancel the current task if its client disconnects, until ``cancel()``.

    The request body must have been read already. Call ``cancel()`` as soon as
    the answer is complete, before awaiting anything else."""

    __slots__ = ("_connection", "_task", "_watcher")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        extensions = scope.get("extensions")
        connection = extensions.get(EXTENSION) if extensions else None
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._connection: ConnectionWatch | None = connection
        self._watcher: asyncio.Task[None] | None = None
        if connection is not None:
            connection.arm(task)
        else:
            self._watcher = sse.cancel_on_disconnect(receive)

    def cancel(self) -> None:
        """Disarm: a disconnect from now on no longer cancels the request."""
        if self._connection is not None:
            self._connection.disarm(self._task)
        elif self._watcher is not None:
            self._watcher.cancel()

    def client_left(self) -> bool:
        """On a ``CancelledError``: True if the client's leaving caused it and
        nothing else asked to cancel this task, so the request may end as a 499;
        False when it must propagate (a server shutting down cancelled it)."""
        if self._connection is None:
            return self._watcher is not None and sse.client_left(self._watcher)
        if self._connection.cancelled is not self._task:
            return False
        return self._task.uncancel() == 0
