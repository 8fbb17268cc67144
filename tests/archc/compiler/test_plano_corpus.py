"""Compatibility bar for Plano 0.4: its own current configs (tests/fixtures/plano, 38 files that
validate against Plano's schema at release 0.4.36) compile unchanged, and what they ask for lands
in the bundle (route pools and policies, the router named by overrides.llm_routing_model) or is
named by one warning per unserved key.

One deliberate difference: a literal ``access_key`` stays an error (V209), since a bundle never
holds a secret; Plano's filter-chain demo writes a placeholder key inline.
"""

import json
from pathlib import Path

import jsonschema
import pytest

from archc.compiler import compile_path

PLANO = Path(__file__).resolve().parents[2] / "fixtures" / "plano"
BUNDLE_SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "bundle.schema.json").read_text())
LITERAL_KEY = {"demos__filter_chains__model_listener_filter__config.yaml": ("V209", 13)}
FILES = sorted(p.name for p in PLANO.glob("*.yaml"))


def compiled(name: str):
    return compile_path(PLANO / name, lock_mode="ignore")


def test_the_corpus_is_all_there() -> None:
    assert len(FILES) == 38
    assert sum("version: v0.4.0" in (PLANO / f).read_text() for f in FILES) == 2  # and routing_preferences pools in v0.3.0 files


@pytest.mark.parametrize("name", FILES)
def test_plano_config_compiles(name: str) -> None:
    result = compiled(name)
    errors = [(d.code, d.span.line) for d in result.diagnostics if d.is_error]
    if name in LITERAL_KEY:
        assert errors == [LITERAL_KEY[name]]
        return
    assert result.ok, [str(d) for d in result.errors]
    jsonschema.Draft202012Validator(BUNDLE_SCHEMA).validate(json.loads(result.bundle.to_bytes()))
    assert not [d for d in result.diagnostics if d.code == "V201"]  # no key of Plano's is unknown here


def test_global_routes_are_model_pools_in_preference_order() -> None:
    bundle = compiled("demos__llm_routing__model_routing_service__config.yaml").bundle
    assert [(r.name, r.model, r.pool, r.policy) for r in bundle.routes] == [
        ("complex_reasoning", "openai/gpt-4o", ("openai/gpt-4o", "openai/gpt-4o-mini"), "none"),
        ("code_generation", "anthropic/claude-sonnet-4-6", ("anthropic/claude-sonnet-4-6", "openai/gpt-4o"), "none"),
    ]


def test_the_full_reference_compiles_its_pools_and_warns_once_per_unserved_key() -> None:
    result = compiled("docs__source__resources__includes__plano_config_full_reference.yaml")
    review = result.bundle.route("code review")
    assert review.pool == ("anthropic/claude-sonnet-4-0", "groq/llama-3.3-70b-versatile") and review.policy == "cheapest"
    warned = {d.path for d in result.diagnostics if d.code == "V207"}
    for key in ("overrides.disable_signals", "tracing.exporters"):
        assert key in warned, sorted(warned)
    assert not any(path.startswith("model_metrics_sources") for path in warned)  # prices and Prometheus latency: served
    assert not any(path.endswith((".passthrough_auth", ".headers")) or path.startswith("routing.session")
                   for path in warned)  # served (session keys: with prompt_caching or route_on_user_only)
    passthrough = next(p for p in result.bundle.providers if p.options.get("passthrough_auth"))
    assert passthrough.key_env is None and passthrough.auth == "none"
    assert not [d for d in result.diagnostics if d.path.startswith("model_metrics_sources[0]")]
    assert result.bundle.extensions["model_metrics_sources"][0]["provider"] == "models.dev"
    assert any(d.code == "R315" and "Plano-Orchestrator" in d.message and d.span.line == 213 for d in result.diagnostics)


def test_an_arch_router_named_by_llm_routing_model_is_the_remote_router() -> None:
    bundle = compiled("demos__llm_routing__preference_based_routing__plano_config_local.yaml").bundle
    assert bundle.router is not None and bundle.router.remote
    assert bundle.router.provider == "plano/hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M"
    assert bundle.router_endpoint() == "http://localhost:11434/v1/chat/completions"


def test_passthrough_auth_ignores_a_literal_key_and_keeps_it_out_of_the_bundle() -> None:
    result = compiled("config__test_passthrough.yaml")
    assert result.ok
    assert [(d.code, d.severity.value, d.span.line) for d in result.diagnostics if d.code == "V209"] == [("V209", "warning", 37)]
    assert b"this-will-be-ignored" not in result.bundle.to_bytes()
