"""Emit stage: canonical, deterministic bundles that validate against schemas/bundle.schema.json."""

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from archc.bundle import Bundle, load
from archc.compiler import compile_path, compile_source
from archc.compiler.router_prompt import ARCH_ROUTER_TEMPLATE, TEMPLATE_SHA256, routes_json

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "bundle.schema.json").read_text())


@pytest.mark.parametrize("name", ["coding_routes.yaml", "aliases.yaml", "multi_provider.yaml"])
def test_byte_identical_across_runs_and_directories(name: str, tmp_path: Path) -> None:
    first = compile_path(EXAMPLES / name, lock_mode="ignore").bundle.to_bytes()
    copy = tmp_path / name
    shutil.copy(EXAMPLES / name, copy)
    second = compile_path(copy, lock_mode="ignore").bundle.to_bytes()
    assert first == second
    data = json.loads(first)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data["digest"].startswith("sha256:") and data["source"]["file"] == name
    assert Bundle.from_bytes(first).to_bytes() == first


def test_digest_names_content() -> None:
    text = "version: v0.3.0\nlisteners: [{type: model, name: llm}]\nmodel_providers:\n  - model: openai/gpt-4o\n"
    a = compile_source(text, file="a.yaml").bundle
    b = compile_source(text.replace("gpt-4o", "gpt-4.1"), file="a.yaml").bundle
    assert a.digest != b.digest
    tampered = a.to_bytes().replace(b"gpt-4o", b"gpt-4x")
    with pytest.raises(ValueError):
        Bundle.from_bytes(tampered)


def test_router_prompt_is_template_with_routes() -> None:
    bundle = compile_path(EXAMPLES / "coding_routes.yaml", lock_mode="ignore").bundle
    pairs = [(r.name, r.description) for r in bundle.routes]
    assert bundle.router.prompt == ARCH_ROUTER_TEMPLATE.replace("{routes}", routes_json(pairs))
    assert bundle.router.template_sha256 == TEMPLATE_SHA256


def test_bundle_holds_no_key_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-must-not-leak")
    result = compile_path(EXAMPLES / "multi_provider.yaml", lock_mode="ignore")
    assert b"sk-from-env" not in result.bundle.to_bytes()
    assert result.bundle.provider("openai/gpt-4o").key_env == "OPENAI_API_KEY"


def test_bundle_file_loads_with_stdlib_loader(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    out.write_bytes(compile_path(EXAMPLES / "aliases.yaml", lock_mode="ignore").bundle.to_bytes())
    bundle = load(out)
    assert bundle.resolve_model("arch.default.v1").provider.name == "claude-fast"


def test_a_lone_surrogate_survives_the_bundle_bytes() -> None:
    """YAML keeps an escaped surrogate half as a lone code point; the canonical bytes escape it."""
    from archc.bundle import Bundle, seal
    from tests.support.gateway import bundle_dict, provider

    data = bundle_dict([provider("openai/gpt-4o", "http://127.0.0.1:1/v1/chat/completions", default=True)],
                       routes=[("code\ud800", "writes code \udfff", "openai/gpt-4o")])
    bundle = seal(data)
    raw = bundle.to_bytes()
    assert b"\\ud800" in raw and b"\\udfff" in raw
    again = Bundle.from_bytes(raw)
    assert again.digest == bundle.digest and again.routes[0].name == "code\ud800"
