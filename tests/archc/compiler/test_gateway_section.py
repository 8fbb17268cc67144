"""gateway: section: schema shape plus check_gateway semantics, copied verbatim into the bundle."""

from archc.compiler import compile_source
from archc.diagnostics import Span
from archc.compiler.gateway_section import check_gateway

BASE = """version: v0.3.0
listeners: [{type: model, name: llm}]
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
  - model: anthropic/claude-sonnet-4-5
    access_key: $ANTHROPIC_API_KEY
"""


def spans(path: tuple) -> Span:
    return Span("f", 1, 1)


def test_fallback_names_must_be_providers() -> None:
    diags = check_gateway({"fallbacks": {"openai/gpt-4o": ["anthropic/claude-sonet-4-5", "openai/gpt-4o"]}},
                          ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"], spans)
    assert [d.code for d in diags] == ["V211", "V211"]
    assert "did you mean 'anthropic/claude-sonnet-4-5'" in diags[0].hint
    assert "itself" in diags[1].message


def test_other_semantic_checks() -> None:
    diags = check_gateway({"require_keys": True, "retries": {"backoff_ms": 500, "backoff_cap_ms": 100},
                           "timeouts": {"connect_ms": 5000, "total_ms": 1000}}, [], spans)
    assert len(diags) == 3


def test_gateway_section_reaches_bundle_verbatim() -> None:
    text = BASE + """gateway:
  require_keys: true
  keys:
    - name: team-a
      key_env: $TEAM_A_KEY
    - name: team-b
      sha256: "0000000000000000000000000000000000000000000000000000000000000000"
  fallbacks:
    openai/gpt-4o: [anthropic/claude-sonnet-4-5]
  ratelimit_backend: {url: "redis://127.0.0.1:6379/0", on_unavailable: open}
"""
    result = compile_source(text, file="g.yaml")
    assert result.ok, result.diagnostics
    gw = result.bundle.extensions["gateway"]
    assert gw["fallbacks"] == {"openai/gpt-4o": ["anthropic/claude-sonnet-4-5"]}
    assert gw["keys"][0] == {"name": "team-a", "key_env": "$TEAM_A_KEY"}


def test_gateway_errors_have_positions() -> None:
    text = BASE + "gateway:\n  fallbacks:\n    openai/gpt-5: [openai/gpt-4o]\n  retries: {max_attempts: 0}\n"
    result = compile_source(text, file="g.yaml")
    got = sorted((d.code, d.span.line) for d in result.diagnostics)
    assert got == [("V205", 11), ("V211", 10)]
