"""Every example config compiles; the committed examples/archc.lock matches them (--locked passes)."""

from pathlib import Path

import pytest

from archc.compiler import compile_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))


def test_required_examples_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"coding_routes.yaml", "aliases.yaml", "multi_provider.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_compiles_against_committed_lock(path: Path) -> None:
    result = compile_path(path, lock_mode="locked")
    assert result.ok, [d.to_dict() for d in result.diagnostics if d.is_error]
    assert not result.lock_written


def test_coding_routes_shape() -> None:
    bundle = compile_path(EXAMPLES / "coding_routes.yaml", lock_mode="read").bundle
    assert [r.name for r in bundle.routes] == ["code generation", "code understanding", "debugging"]
    assert bundle.alias("arch.claude.code.small.fast").target == "anthropic/claude-haiku-4-5"
    assert bundle.default_model == "anthropic/claude-sonnet-4-5"


def test_multi_provider_covers_the_table() -> None:
    bundle = compile_path(EXAMPLES / "multi_provider.yaml", lock_mode="read").bundle
    prefixes = {p.provider for p in bundle.providers}
    assert {"openai", "anthropic", "gemini", "mistral", "deepseek", "groq", "xai", "together_ai", "azure_openai",
            "ollama", "openrouter", "echo"} <= prefixes
    assert bundle.provider("vllm-qwen").endpoint == "http://vllm.internal:8000/v1/chat/completions"
    assert all(p.served for p in bundle.providers)


def test_readme_config_example_compiles(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:config -->", 1)[1].split("<!-- /section:config -->", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    result = compile_path(path, lock_mode="ignore")
    assert result.ok, [d.to_dict() for d in result.diagnostics if d.is_error]
    assert [d.code for d in result.diagnostics] == ["R307"]
