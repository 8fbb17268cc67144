"""Resolve stage: providers, keys, aliases (chains, bare ids, cycles), routes, routing, rate limits."""

from archc.compiler import compile_source
from archc.diagnostics import format_github, format_json, format_text

HEAD = "version: v0.3.0\nlisteners: [{type: model, name: llm, port: 12000}]\n"


def build(body: str):
    result = compile_source(HEAD + body, file="c.yaml")
    return result


def test_env_reference_forms_and_no_key() -> None:
    r = build("""model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
  - model: anthropic/claude-sonnet-4-5
    access_key: ${ANTHROPIC_API_KEY}
  - model: ollama/llama3.1
    base_url: http://127.0.0.1:11434
""")
    assert r.ok
    p = {x.name: x for x in r.bundle.providers}
    assert p["openai/gpt-4o"].key_env == "OPENAI_API_KEY" and p["openai/gpt-4o"].auth == "bearer"
    assert p["anthropic/claude-sonnet-4-5"].key_env == "ANTHROPIC_API_KEY"
    assert p["ollama/llama3.1"].key_env is None and p["ollama/llama3.1"].auth == "none"


def test_literal_secret_never_reaches_any_output() -> None:
    secret = "sk-live-THIS-IS-A-SECRET-123"
    r = build(f"model_providers:\n  - model: openai/gpt-4o\n    access_key: {secret}\n")
    assert not r.ok and r.bundle is None
    for text in (format_text(r.diagnostics), format_json(r.diagnostics), format_github(r.diagnostics)):
        assert secret not in text
    assert [d.code for d in r.diagnostics] == ["V209"]


def test_secret_in_wrong_type_or_syntax_error_is_not_echoed() -> None:
    r = build("model_providers:\n  - model: openai/gpt-4o\n    access_key: [sk-secret-abc]\n")
    assert "sk-secret-abc" not in str([d.message for d in r.diagnostics])
    r = build("model_providers:\n  - model: openai/gpt-4o\n    access_key: \"sk-secret-abc\n")
    assert "sk-secret-abc" not in str([d.message for d in r.diagnostics])


def test_alias_targets_literal_name_bare_and_chain() -> None:
    r = build("""model_providers:
  - model: openai/gpt-4o-mini
    access_key: $OPENAI_API_KEY
    default: true
  - name: fast
    model: anthropic/claude-haiku-4-5
    access_key: $ANTHROPIC_API_KEY
model_aliases:
  a.bare.v1: {target: gpt-4o-mini}
  a.name.v1: {target: fast}
  a.literal.v1: {target: openai/gpt-4o-mini}
  a.chain.v1: {target: a.name.v1}
  floating: {target: a.chain.v1}
""")
    assert r.ok, r.diagnostics
    b = r.bundle
    assert b.alias("a.bare.v1").target == "openai/gpt-4o-mini"
    assert b.alias("a.name.v1").target == "fast"
    assert b.alias("a.chain.v1").chain == ("a.chain.v1", "a.name.v1", "fast")
    assert b.alias("floating").chain == ("floating", "a.chain.v1", "a.name.v1", "fast")
    assert b.alias("floating").pinned is False and b.alias("a.chain.v1").pinned is True
    assert [(d.code, d.span.line) for d in r.diagnostics] == [("R307", 15)]
    assert b.resolve_model("floating").provider.model == "claude-haiku-4-5"


def test_cycle_message_shows_the_cycle() -> None:
    r = build("""model_providers:
  - model: openai/gpt-4o
model_aliases:
  x.v1: {target: y.v1}
  y.v1: {target: z.v1}
  z.v1: {target: x.v1}
""")
    cycles = [d.message for d in r.diagnostics if d.code == "R306"]
    assert cycles and "x.v1 -> y.v1 -> z.v1 -> x.v1" in cycles[0]


def test_routes_in_config_order_and_router_section() -> None:
    r = build("""model_providers:
  - model: openai/gpt-4o
    default: true
    routing_preferences:
      - {name: b-route, description: second letter}
  - model: openai/o3
    routing_preferences:
      - {name: a-route, description: first letter}
      - {name: c-route, description: third letter}
routing:
  model: Arch-Router
  llm_provider: openai/o3
  timeout_ms: 900
  confidence_threshold: 0.5
  device: cpu
""")
    assert r.ok
    b = r.bundle
    assert [x.name for x in b.routes] == ["b-route", "a-route", "c-route"]
    assert [x.model for x in b.routes] == ["openai/gpt-4o", "openai/o3", "openai/o3"]
    assert b.router.route_names == ("b-route", "a-route", "c-route")
    assert b.router.model == "katanemo/Arch-Router-1.5B" and b.router.device == "cpu"
    assert b.routing.timeout_ms == 900 and b.routing.confidence_threshold == 0.5
    assert b.routing.explicit_model_bypass is False and b.routing.token_budget == 2048
    # The named provider serves the router: decisions call it (R320: the threshold needs its logprobs).
    assert (b.router.provider, b.router.backend, b.router.remote) == ("openai/o3", "auto", True)
    assert [d.code for d in r.diagnostics] == ["R320"]


def test_archgw_remote_router_config_compiles_to_a_remote_router() -> None:
    """archgw's preference_based_routing demo: the Arch-Router GGUF on Ollama, named by routing.llm_provider.
    The ``arch/`` provider is served (for routing: an OpenAI-compatible server at base_url), no R304/R315."""
    r = build("""routing: {model: Arch-Router, llm_provider: arch-router}
llm_providers:
  - name: arch-router
    model: arch/hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M
    base_url: http://host.docker.internal:11434
  - model: openai/gpt-4o-mini
    default: true
  - model: openai/gpt-4o
    routing_preferences: [{name: code understanding, description: understand and explain code}]
""")
    assert r.ok and r.diagnostics == [], format_text(r.diagnostics)
    router = r.bundle.provider("arch-router")
    assert (router.served, router.endpoint, router.model) == (
        True, "http://host.docker.internal:11434/v1/chat/completions", "hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M")
    assert (r.bundle.router.provider, r.bundle.router.remote) == ("arch-router", True)


def test_remote_router_settings_are_checked() -> None:
    head = """model_providers:
  - model: openai/gpt-4o
    default: true
    routing_preferences: [{name: code, description: write code}]
  - model: anthropic/claude-x
"""
    local = build(head + "routing: {llm_provider: openai/gpt-4o, backend: local}\n")
    assert local.ok and local.bundle.router.remote is False and [d.code for d in local.diagnostics] == ["R315"]
    assert [d.code for d in build(head + "routing: {llm_provider: anthropic/claude-x}\n").diagnostics] == ["R318"]
    assert [d.code for d in build(head + "routing: {backend: remote}\n").diagnostics] == ["R319"]
    echo = build("model_providers:\n  - {model: echo/e, default: true, routing_preferences: [{name: a, description: b}]}\n"
                 "routing: {llm_provider: echo/e}\n")
    assert [d.code for d in echo.diagnostics] == ["R318"]


def test_no_routes_means_no_router() -> None:
    r = build("model_providers:\n  - model: openai/gpt-4o\n")
    assert r.ok and r.bundle.router is None and r.bundle.default_model is None


def test_ratelimits_normalized_through_aliases() -> None:
    r = build("""model_providers:
  - model: openai/gpt-4o
model_aliases:
  smart.v1: {target: gpt-4o}
ratelimits:
  - model: smart.v1
    selector: {key: x-team, value: research}
    limit: {tokens: 1000, unit: hour}
""")
    assert r.ok
    assert list(r.bundle.ratelimits) == [{"model": "openai/gpt-4o", "selector": {"key": "x-team", "value": "research"},
                                          "limit": {"tokens": 1000, "unit": "hour"}, "window_s": 3600}]


def test_listeners_legacy_and_list() -> None:
    r = compile_source("""version: v0.1
listeners:
  egress_traffic: {address: 127.0.0.1, port: 12001, timeout: 1.5s}
llm_providers:
  - model: echo/x
""", file="c.yaml")
    assert r.ok
    (lst,) = r.bundle.listeners
    assert (lst.name, lst.kind, lst.address, lst.port, lst.timeout_ms) == ("egress_traffic", "model", "127.0.0.1", 12001, 1500)


def test_echo_provider() -> None:
    r = build("model_providers:\n  - model: echo/anything\n    default: true\n")
    p = r.bundle.provider("echo/anything")
    assert (p.endpoint, p.wire, p.auth, p.key_env, p.served) == ("echo://local", "openai_chat", "none", None, True)


def test_all_problems_reported_in_one_run() -> None:
    r = build("""model_providers:
  - model: openai/gpt-4o
    acess_key: $X
  - model: gpt-4o
  - model: ollama/llama3
model_aliases:
  a.v1: {target: nowhere}
routing: {device: tpu}
""")
    assert {d.code for d in r.diagnostics if d.is_error} == {"V201", "R301", "R302", "R305", "V204"}


def test_routes_without_default_warn() -> None:
    r = build("model_providers:\n  - model: openai/gpt-4o\n    routing_preferences:\n"
              "      - {name: coding, description: write code}\n")
    assert r.ok and [(d.code, d.span.line) for d in r.diagnostics] == [("R316", 3)]


def test_responses_endpoints_in_the_bundle() -> None:
    """OpenAI's own API and ``provider_interface: openai_responses`` take Responses clients as they are;
    an ``openai/`` model on its own base_url, and every other provider, does not (None)."""
    r = build("""model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
  - model: openai/local
    base_url: http://127.0.0.1:8000/v1
  - model: vllm/qwen
    base_url: http://127.0.0.1:8001
    provider_interface: openai_responses
  - model: anthropic/claude-sonnet-4-5
    access_key: $ANTHROPIC_API_KEY
""")
    assert r.ok, format_text(r.diagnostics)
    got = {p.name: (p.endpoint, p.responses_endpoint) for p in r.bundle.providers}
    assert got == {
        "openai/gpt-4o": ("https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/responses"),
        "openai/local": ("http://127.0.0.1:8000/v1/chat/completions", None),
        "vllm/qwen": ("http://127.0.0.1:8001/v1/chat/completions", "http://127.0.0.1:8001/v1/responses"),
        "anthropic/claude-sonnet-4-5": ("https://api.anthropic.com/v1/messages", None)}
