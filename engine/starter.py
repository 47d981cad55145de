"""The starter policy that ``turnout init`` writes: commented, valid, and served
offline by the mock provider until a real provider's key is set."""

from __future__ import annotations

__all__ = ["STARTER_POLICY"]

STARTER_POLICY = """\
# routes.yaml: where each request may go. Check it with `turnout check`, see a
# route's plan with `turnout plan --model smart`, serve it with `turnout serve`.
# As written it runs offline: the mock provider echoes the prompt back.
version: 1

providers:                       # named instances of a provider type; declare every one
  mock: {type: mock}             # built-in, offline, deterministic (it must be declared too)
  openai:
    type: openai                 # any OpenAI-compatible API (set base_url for vLLM, Ollama, ...)
    api_key: "${OPENAI_API_KEY}" # unset: this provider is disabled and skipped, not an error
  # anthropic: {type: anthropic, api_key: "${ANTHROPIC_API_KEY}"}

defaults:                        # every route inherits these unless it says otherwise
  retry: {attempts: 2, backoff: 100ms, on: [429, 5xx, timeout, connection]}
  timeout: {total: 60s, first_token: 15s}

routes:                          # first match wins, in file order
  - name: smart                  # callers send "model": "smart"
    match: {model: smart}
    targets:                     # a weighted split between targets
      - {model: openai/gpt-4o, weight: 3}
      - {model: openai/gpt-4o-mini, weight: 1}
    fallbacks: [mock/echo]       # tried in order when the targets fail or are skipped
    cost_cap: {per_request: 0.05}  # USD, worst case: dearer targets are skipped

# Any other "provider/model" name (e.g. "mock/echo", "openai/gpt-4o-mini") goes
# straight to that provider. `turnout schema` prints the JSON Schema of this file
# (for editor completion).
"""
