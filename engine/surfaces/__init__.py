"""Inbound surfaces: other APIs' wire formats, translated at the edge to chat.

A surface is an adapter in front of the engine: it validates its own request
model (pydantic, unknown fields kept), translates it to a ``ChatRequest`` with
pure functions, sends that through the engine's chat path (so routing,
fallbacks, budgets, cache, guardrails, metrics and logs all apply), and
translates the ``ChatResponse`` or ``ChatChunk`` stream back. The gateway's
handlers (``turnout.http``) call a surface; a surface never imports the HTTP
layer, nor ``turnout.engine``: what a surface needs of the engine is the
``ChatHost`` protocol (``turnout.surfaces.host``), and the engine offers the
surfaces as ``engine.responses`` / ``engine.completions``.
``extra_fields.request_type`` on each answer says which surface served.

- ``turnout.surfaces.responses``: OpenAI's Responses API (``/v1/responses``).
- ``turnout.surfaces.completions``: legacy text completions (``/v1/completions``).
"""
