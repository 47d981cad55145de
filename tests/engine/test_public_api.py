from __future__ import annotations

import turnout


def test_public_surface_is_explicit() -> None:
    assert sorted(turnout.__all__) == [
        "Attempt",
        "AttemptRecord",
        "ChatChunk",
        "ChatRequest",
        "ChatResponse",
        "ChatStream",
        "Engine",
        "ExtraFields",
        "FailureClass",
        "Finding",
        "Guardrail",
        "Plan",
        "PluginError",
        "PolicyError",
        "Problem",
        "Provider",
        "ProviderCall",
        "ProviderError",
        "ProviderSettings",
        "Ranking",
        "RequestContext",
        "RequestOutcome",
        "Skip",
        "SkipReason",
        "Strategy",
        "StrategyInput",
        "TurnoutError",
        "Usage",
        "hookimpl",
        "make_plugin_manager",
        "parse_request",
    ]
    for name in turnout.__all__:
        assert getattr(turnout, name) is not None


def test_the_readme_example_works() -> None:
    eng = turnout.Engine.from_file("routes.yaml", env={}, autoload=False)
    try:
        resp = eng.chat_sync({"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.choices[0].message.content == "hi"
        assert resp.extra_fields.provider == "mock"
        plan = eng.plan({"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
        assert (
            "openai/gpt-4o (" in plan.explain()
            and "provider_disabled: API key not set" in plan.explain()
        )
    finally:
        eng.close()
