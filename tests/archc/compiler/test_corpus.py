"""Compatibility bar: archgw's own configs (../shared/corpus, read in place) compile or fail as upstream says.

SOURCE.md lists 6 files invalid upstream. Five are rejected here with a diagnostic naming the real
problem and its line; one (plano_config.yaml, ``version: v0.2.0``) was rejected upstream by a schema
bug (the version enum; nothing depends on the version) and is accepted here with warning V208.
"""

import json
from pathlib import Path

import jsonschema
import pytest

from archc.compiler import compile_path

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "archgw-configs"
BUNDLE_SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "bundle.schema.json").read_text())

# file -> errors that must be present: (code, line, path)
INVALID_UPSTREAM = {
    "docs__source__build_with_plano__includes__agent__function-calling-agent.yaml": [
        ("V201", 2, "listener"), ("V202", 1, ""), ("V201", 10, "llm_providers[0].provider")],
    "docs__source__build_with_plano__includes__multi_turn__prompt_targets_multi_turn.yaml": [
        ("V201", 2, "listener"), ("V201", 10, "llm_providers[0].provider")],
    "docs__source__build_with_plano__includes__rag__prompt_targets.yaml": [
        ("V202", 1, ""), ("V201", 5, "prompt_targets[0].path")],
    "docs__source__resources__includes__arch_config_full_reference_rendered.yaml": [
        ("V201", 10, "endpoints.app_server.port"), ("V204", 70, "listeners[3].type")],
    "docs__source__resources__includes__plano_config_agents_filters.yaml": [
        ("V204", 33, "listeners[0].router")],
}
SCHEMA_BUG_ACCEPTED = {"docs__source__concepts__includes__plano_config.yaml": ("V208", 1)}


def _corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(p.name for p in CORPUS.glob("*.yaml"))


def test_source_lists_six_invalid_files(shared_dir: Path) -> None:
    source = (shared_dir / "corpus" / "archgw-configs" / "SOURCE.md").read_text()
    for name in [*INVALID_UPSTREAM, *SCHEMA_BUG_ACCEPTED]:
        assert name.replace(".yaml", "") in source.replace("\n", "").replace(" ", "") or name in source


@pytest.mark.parametrize("name", _corpus_files() or ["<corpus absent>"])
def test_corpus_config(name: str, shared_dir: Path) -> None:
    path = shared_dir / "corpus" / "archgw-configs" / name
    result = compile_path(path, lock_mode="ignore")
    errors = {(d.code, d.span.line, d.path) for d in result.diagnostics if d.is_error}
    if name in INVALID_UPSTREAM:
        assert not result.ok
        for expected in INVALID_UPSTREAM[name]:
            assert expected in errors, sorted(errors)
        return
    assert result.ok, sorted(errors)
    jsonschema.Draft202012Validator(BUNDLE_SCHEMA).validate(json.loads(result.bundle.to_bytes()))
    if name in SCHEMA_BUG_ACCEPTED:
        code, line = SCHEMA_BUG_ACCEPTED[name]
        assert (code, line) in {(d.code, d.span.line) for d in result.diagnostics if not d.is_error}


def test_unserved_sections_warn_once_each_with_line(shared_dir: Path) -> None:
    path = shared_dir / "corpus" / "archgw-configs" / "demos__samples_python__weather_forecast__config.yaml"
    result = compile_path(path, lock_mode="ignore")
    warned = [(d.path, d.span.line) for d in result.diagnostics if d.code == "V207" and d.path in
              ("endpoints", "system_prompt", "prompt_targets")]
    assert sorted(warned) == [("endpoints", 16), ("prompt_targets", 42), ("system_prompt", 39)]


def test_llm_routing_demo_resolves_every_provider(shared_dir: Path) -> None:
    path = shared_dir / "corpus" / "archgw-configs" / "demos__use_cases__llm_routing__config.yaml"
    bundle = compile_path(path, lock_mode="ignore").bundle
    assert bundle is not None
    together = bundle.provider("together_ai/openai/gpt-oss-20b")
    assert together.model == "openai/gpt-oss-20b" and together.endpoint == "https://api.together.xyz/v1/chat/completions"
    custom = bundle.provider("custom/test-model")
    assert custom.endpoint == "http://host.docker.internal:11223/v1/chat/completions" and custom.auth == "none"
    assert bundle.provider("xai/grok-4-latest").key_env == "GROK_API_KEY"
    assert bundle.default_model == "openai/gpt-4o"


def test_claude_code_router_demo(shared_dir: Path) -> None:
    path = shared_dir / "corpus" / "archgw-configs" / "demos__use_cases__claude_code_router__config.yaml"
    result = compile_path(path, lock_mode="ignore")
    bundle = result.bundle
    assert bundle is not None
    assert [r.name for r in bundle.routes] == ["code generation", "code understanding"]
    assert bundle.alias("arch.claude.code.small.fast").target == "anthropic/claude-haiku-4-5"
    assert ("R307", 39) in {(d.code, d.span.line) for d in result.diagnostics}
    assert bundle.router is not None and bundle.router.model == "katanemo/Arch-Router-1.5B"
