"""explain: alias chain -> literal -> provider -> URL and wire, offline."""

import json
from pathlib import Path

from archc.compiler import compile_path
from archc.review.explain import explain, format_json, format_text

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


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
    assert "the in-process router model decides on every request" in e.routing_note
    doc = json.loads(format_json(explain(bundle, "openai/gpt-5-2025-08-07")))
    assert doc["via"] == "literal" and doc["provider"]["endpoint"] == "https://api.openai.com/v1/chat/completions"


def test_unknown_model_suggests() -> None:
    bundle = compile_path(EXAMPLES / "multi_provider.yaml", lock_mode="ignore").bundle
    e = explain(bundle, "arch.fast.v2")
    assert not e.found and "arch.fast.v1" in e.suggestions
    assert "default is used: openai/gpt-4o" in e.routing_note
    assert "did you mean" in format_text(e)


DEADLINES = """\
version: v0.1.0
listeners:
  - {type: model, name: llm, port: 12000, timeout: 30s}
model_providers:
  - {model: openai/gpt-4o, access_key: $OPENAI_API_KEY, default: true}
  - {model: anthropic/claude-opus-4-1, access_key: $ANTHROPIC_API_KEY, timeout: 5m}
  - {model: openai/gpt-4o-mini, access_key: $OPENAI_API_KEY, timeout: 0s}
"""


def test_deadline_is_the_providers_timeout_else_the_listeners_capped_by_total_ms(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(DEADLINES)
    bundle = compile_path(config, lock_mode="ignore").bundle
    assert bundle.deadline("openai/gpt-4o").ms == 30_000 and bundle.deadline("openai/gpt-4o").source == "listeners[llm].timeout"
    assert bundle.deadline("anthropic/claude-opus-4-1").ms == 300_000
    assert bundle.deadline("openai/gpt-4o-mini").ms is None  # 0s: this provider has no deadline
    assert "deadline: 30000 ms end to end (listeners[llm].timeout)" in format_text(explain(bundle, "openai/gpt-4o"))
    assert "deadline: 300000 ms end to end (model_providers[anthropic/claude-opus-4-1].timeout)" in \
        format_text(explain(bundle, "anthropic/claude-opus-4-1"))
    assert "deadline: none (model_providers[openai/gpt-4o-mini].timeout is 0s)" in format_text(explain(bundle, "openai/gpt-4o-mini"))
    assert json.loads(format_json(explain(bundle, "openai/gpt-4o")))["deadline"] == {"ms": 30000, "source": "listeners[llm].timeout"}
    # gateway.timeouts.total_ms caps a longer deadline and is named when it does.
    config.write_text(DEADLINES + "gateway:\n  timeouts: {total_ms: 60000}\n")
    bundle = compile_path(config, lock_mode="ignore").bundle
    assert (bundle.deadline("anthropic/claude-opus-4-1").ms, bundle.deadline("anthropic/claude-opus-4-1").source) == \
        (60_000, "gateway.timeouts.total_ms")
    assert bundle.deadline("openai/gpt-4o").source == "listeners[llm].timeout"
    # No listener timeout, no provider timeout: no deadline (the between-bytes read timeout still applies).
    config.write_text(DEADLINES.replace(", timeout: 30s", ""))
    assert compile_path(config, lock_mode="ignore").bundle.deadline("openai/gpt-4o").ms is None


def test_a_provider_timeout_that_is_not_a_duration_is_a_positioned_diagnostic(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(DEADLINES.replace("timeout: 5m", "timeout: 300"))
    result = compile_path(config, lock_mode="ignore")
    assert result.bundle is None
    found = [d for d in result.diagnostics if d.path == "model_providers[1].timeout"]
    assert found and found[0].code == "V203" and found[0].span.line == 6, [str(d) for d in result.diagnostics]


def test_base_url_rewrite_shown() -> None:
    from archc.compiler import compile_source
    config = ("version: v0.3.0\nlisteners:\n  - {type: model, name: llm}\nmodel_providers:\n"
              "  - model: ds/deepseek-chat\n    base_url: https://api.deepseek.com/anthropic\n"
              "    provider_interface: anthropic\n    default: true\n")
    bundle = compile_source(config, lock_mode="ignore").bundle
    text = format_text(explain(bundle, "ds/deepseek-chat"))
    assert "POST https://api.deepseek.com/anthropic/v1/messages" in text
    assert "url rule: the anthropic SDK's rule: base_url + /v1/messages" in text
