"""explain: alias chain -> literal -> provider -> URL and wire, offline."""

import json
from pathlib import Path

from archc.compiler import compile_path
from archc.explain import explain, format_json, format_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_alias_chain_explained() -> None:
    bundle = compile_path(EXAMPLES / "aliases.yaml", lock_mode="ignore").bundle
    e = explain(bundle, "arch.default.v1")
    assert e.found and e.via == "alias" and e.pinned
    assert e.chain == ("arch.default.v1", "arch.summarize.v2", "claude-fast")
    text = format_text(e)
    assert "arch.default.v1 -> arch.summarize.v2 -> claude-fast" in text
    assert "POST https://api.anthropic.com/v1/messages" in text and "anthropic_messages" in text
    assert "$ANTHROPIC_API_KEY" in text


def test_bare_and_literal_and_routing_note() -> None:
    bundle = compile_path(EXAMPLES / "coding_routes.yaml", lock_mode="ignore").bundle
    e = explain(bundle, "gpt-4.1-2025-04-14")
    assert e.via == "bare" and e.provider.name == "openai/gpt-4.1-2025-04-14"
    assert "router runs on every request" in e.routing_note
    doc = json.loads(format_json(explain(bundle, "openai/gpt-5-2025-08-07")))
    assert doc["via"] == "literal" and doc["provider"]["endpoint"] == "https://api.openai.com/v1/chat/completions"


def test_unknown_model_suggests() -> None:
    bundle = compile_path(EXAMPLES / "multi_provider.yaml", lock_mode="ignore").bundle
    e = explain(bundle, "arch.fast.v2")
    assert not e.found and "arch.fast.v1" in e.suggestions
    assert "default is used: openai/gpt-4o" in e.routing_note
    assert "did you mean" in format_text(e)
