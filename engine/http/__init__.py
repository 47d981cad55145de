"""The HTTP gateway (``turnout serve``): a thin ASGI entrypoint to the engine.

``Gateway(engine)`` is the ASGI app; ``serve(ServeOptions(...))`` runs it on
uvicorn. See ``turnout.http.app`` for the endpoints.
"""

from __future__ import annotations

from turnout.http.app import Gateway
from turnout.http.drain import Drain
from turnout.http.reload import PolicyReloader
from turnout.http.server import ServeOptions, build_app, serve

__all__ = ["Drain", "Gateway", "PolicyReloader", "ServeOptions", "build_app", "serve"]
