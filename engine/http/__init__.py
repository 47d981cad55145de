"""The HTTP gateway (``turnout serve``): a thin ASGI entrypoint to the engine.

``Gateway(engine)`` is the ASGI app; ``serve(ServeOptions(...))`` runs it on
uvicorn. See ``engine.http.app`` for the endpoints.
"""

from __future__ import annotations

from .app import Gateway
from .drain import Drain
from .reload import PolicyReloader
from .server import ServeOptions, build_app, serve

__all__ = ["Drain", "Gateway", "PolicyReloader", "ServeOptions", "build_app", "serve"]
