from __future__ import annotations

import textwrap

import pytest
from turnout import PolicyError, Provider
from turnout.contract.hookspecs import hookimpl
from turnout.contract.registry import PluginError, collect_provider_types, make_plugin_manager
from turnout.policy.compile import compile_policy
from turnout.policy.loader import parse_document

TYPES = collect_provider_types(make_plugin_manager(autoload=False))


def compile_text(text: str, env: dict[str, str] | None = None):
    doc = parse_document(textwrap.dedent(text), file="routes.yaml", env=env or {})
    return compile_policy(doc, TYPES)


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        compile_text(text)
    return [str(p) for p in info.value.problems]


FIVE_MISTAKES = """\
version: 1
providers:
  mock: {type: mock}
  openai: {type: opnai}
routes:
  - name: smart
    match: {model: smart}
    targets:
      - {model: mock/a, weight: 0}
    fallbacks: [mokc/echo]
    retyr: {attempts: 2}
    timeout: {total: 10 mins}
  - name: smart
    match: {model: other}
"""


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    found = problems(FIVE_MISTAKES)
    assert found[0].startswith(
        "routes.yaml:4:12: unknown provider type 'opnai' (hint: did you mean 'openai'? known types:"
    )
    assert found[1:] == [
        "routes.yaml:9:25: targets[0].weight: input should be greater than 0",
        "routes.yaml:10:17: unknown provider 'mokc' in 'mokc/echo' (hint: did you mean 'mock'? "
        "known providers: mock, openai)",
        "routes.yaml:11:5: unknown key 'retyr' (hint: did you mean 'retry'? allowed keys: "
        "budget, cache, cost_cap, fallbacks, guardrails, match, name, over_budget, rate_limit, "
        "request_fallbacks, retry, shadow, strategy, targets, timeout)",
        "routes.yaml:12:15: timeout.total: invalid duration '10 mins': use a number followed by "
        "ms, s, m or h, such as 250ms or 10m",
        "routes.yaml:13:5: duplicate route name 'smart' (hint: first defined at line 6; "
        "route names must be unique)",
    ]


def test_a_route_after_a_catch_all_is_unreachable() -> None:
    found = problems("""
        providers: {mock: {type: mock}}
        routes:
          - {name: all, match: {model: "*"}, targets: [mock/a]}
          - {name: later, match: {model: smart}, targets: [mock/b]}
    """)
    assert len(found) == 1 and "route 'later' can never match" in found[0]
    assert "routes.yaml:5:" in found[0]


def test_conditional_routes_do_not_shadow() -> None:
    table = compile_text("""
        providers: {mock: {type: mock}}
        routes:
          - {name: tenant, match: {model: "*", headers: {x-tenant: acme}}, targets: [mock/a]}
          - {name: smart, match: {model: "smart"}, targets: [mock/b]}
          - {name: rest, match: {model: "openai/*"}, targets: [mock/c]}
    """)
    assert [r.name for r in table.routes] == ["tenant", "smart", "rest"]


def test_glob_shadowing_is_detected() -> None:
    found = problems("""
        providers: {mock: {type: mock}}
        routes:
          - {name: any-pair, match: {model: "*/*"}}
          - {name: openai, match: {model: "openai/*"}, targets: [mock/b]}
    """)
    assert "route 'openai' can never match" in found[0]


def test_missing_api_key_disables_the_provider_instead_of_failing() -> None:
    table = compile_text("""
        providers:
          openai: {type: openai, api_key: "${OPENAI_API_KEY}"}
          mock: {type: mock}
    """)
    assert table.providers["openai"].disabled == "API key not set: ${OPENAI_API_KEY} is empty"
    assert table.providers["mock"].disabled is None


def test_missing_env_elsewhere_is_an_error() -> None:
    found = problems("""
        providers:
          local: {type: openai, base_url: "${LOCAL_URL}"}
    """)
    assert found == [
        "routes.yaml:3:25: environment variable LOCAL_URL is not set "
        "(hint: export LOCAL_URL, or give a default: ${LOCAL_URL:-value})"
    ]


def test_weighted_api_keys_skip_unset_ones() -> None:
    table = compile_text(
        """
        providers:
          openai:
            type: openai
            api_keys:
              - {key: "${KEY_A}", weight: 3}
              - {key: "${KEY_B}", weight: 1}
        """,
        env={"KEY_A": "sk-a"},
    )
    provider = table.providers["openai"]
    assert provider.api_keys == ("sk-a",) and provider.key_weights == (3.0,)
    assert provider.disabled is None


def test_provider_options_are_validated_by_the_provider_type() -> None:
    found = problems("""
        providers:
          mock: {type: mock, options: {latncy: 5ms}}
    """)
    assert len(found) == 1
    assert found[0].startswith("routes.yaml:3:") and "unknown key 'latncy'" in found[0]


def test_cost_cap_needs_prices_for_its_targets() -> None:
    found = problems("""
        providers: {local: {type: openai, base_url: "http://127.0.0.1:1/v1"}}
        routes:
          - {name: r, match: {model: r}, targets: [local/llama], cost_cap: {per_request: 0.01}}
    """)
    assert "local/llama has no known price" in found[0]
    assert "models:" in found[0]


def test_prices_come_from_the_catalog_and_policy_overrides_win() -> None:
    table = compile_text("""
        providers:
          openai: {type: openai, api_key: sk}
          local: {type: openai, base_url: "http://127.0.0.1:1/v1"}
        models:
          local/llama: {input_per_mtok: 0, output_per_mtok: 0, context_window: 8192}
          openai/gpt-4o-mini: {context_window: 1000}
    """)
    gpt = table.target("openai/gpt-4o")
    assert gpt is not None and gpt.info.input_per_mtok == 2.5 and gpt.info.output_per_mtok == 10
    assert gpt.info.context_window == 128000
    llama = table.target("local/llama")
    assert llama is not None and llama.info.context_window == 8192 and llama.info.priced
    mini = table.target("openai/gpt-4o-mini")
    assert mini is not None and mini.info.context_window == 1000
    assert mini.info.input_per_mtok == 0.15  # not overridden: still from the catalog


def test_model_overrides_must_name_a_known_provider() -> None:
    found = problems("""
        providers: {mock: {type: mock}}
        models:
          mokc/x: {input_per_mtok: 1}
    """)
    assert "unknown provider 'mokc' in 'mokc/x'" in found[0]


def test_not_a_mapping() -> None:
    assert problems("- a\n- b\n") == [
        "routes.yaml:1:1: a policy must be a mapping with providers and routes"
    ]


def test_an_empty_policy_compiles_to_direct_routing_only() -> None:
    table = compile_text("")
    assert table.routes == () and table.direct_route is not None


class _Dup(Provider):
    async def chat(self, call):  # pragma: no cover - never called
        raise NotImplementedError


class _DupPlugin:
    @hookimpl
    def turnout_register_providers(self, register):
        register("mock", _Dup)


def test_two_plugins_registering_one_type_are_both_named() -> None:
    pm = make_plugin_manager([_DupPlugin()], autoload=False)
    with pytest.raises(PluginError) as info:
        collect_provider_types(pm)
    message = str(info.value)
    assert "provider type 'mock' is registered by both" in message
    assert "'turnout.plugins.providers.mock'" in message and "test_compile._DupPlugin'" in message
