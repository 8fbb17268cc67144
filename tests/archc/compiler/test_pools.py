"""Plano 0.4's routes over model pools: the top-level form and the inline form compile into the same
bundle routes; Plano's checks (every pool model declared, each policy's metrics source, one source
per kind, unique names) are diagnostics with line and column; single-model routes are written
exactly as before (the same bundle bytes and digest)."""

from archc.compiler import compile_source
from archc.review.diff import diff_bundles
from archc.review.explain import explain

HEAD = """version: v0.4.0
listeners: [{type: model, name: llm, port: 12000}]
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
    default: true
  - model: openai/gpt-4o-mini
    access_key: $OPENAI_API_KEY
  - model: anthropic/claude-sonnet-4-6
    access_key: $ANTHROPIC_API_KEY
"""
COST = "model_metrics_sources:\n  - {type: cost, provider: models.dev, refresh_interval: 3600}\n"


def build(body: str):
    return compile_source(HEAD + body, file="c.yaml")


def diags(result) -> list[tuple[str, str, int, int]]:
    return [(d.code, d.severity.value, d.span.line, d.span.col) for d in result.diagnostics]


def test_a_top_level_route_holds_its_pool_in_order_and_its_policy() -> None:
    r = build(COST + """routing_preferences:
  - name: code generation
    description: writing new code
    models: [anthropic/claude-sonnet-4-6, gpt-4o]
    selection_policy: {prefer: cheapest}
  - name: chit chat
    description: small talk
    models: [openai/gpt-4o-mini]
""")
    assert r.ok, diags(r)
    gen, chat = r.bundle.routes
    assert (gen.model, gen.pool, gen.policy) == ("anthropic/claude-sonnet-4-6", ("anthropic/claude-sonnet-4-6", "openai/gpt-4o"), "cheapest")
    assert (chat.model, chat.pool, chat.policy, chat.models) == ("openai/gpt-4o-mini", ("openai/gpt-4o-mini",), "none", ())
    text = r.bundle.to_bytes().decode()
    assert '"models":["anthropic/claude-sonnet-4-6","openai/gpt-4o"]' in text and '"policy":"cheapest"' in text
    assert text.count('"models"') == 1 and text.count('"policy"') == 1  # a one-model route in order is written as before
    note = explain(r.bundle, "openai/gpt-4o").routing_note
    assert "code generation [pool: anthropic/claude-sonnet-4-6 > openai/gpt-4o; prefer cheapest]" in note and "cheapest], chit chat)" in note


def test_the_inline_form_on_several_providers_is_one_pooled_route() -> None:
    inline = HEAD.replace("    default: true\n", "    default: true\n    routing_preferences:\n      - {name: code, description: write code}\n") \
        .replace("    access_key: $ANTHROPIC_API_KEY\n", "    access_key: $ANTHROPIC_API_KEY\n    routing_preferences:\n"
                 "      - {name: code, description: write all the code}\n")
    r = compile_source(inline, file="c.yaml")
    assert r.ok
    [route] = r.bundle.routes
    assert route.pool == ("openai/gpt-4o", "anthropic/claude-sonnet-4-6") and route.description == "write code"
    assert [(c, s, line) for c, s, line, _ in diags(r)] == [("R323", "warning", 14)]
    top = build("routing_preferences:\n  - {name: code, description: write code, models: [gpt-4o, anthropic/claude-sonnet-4-6]}\n")
    assert top.bundle.routes == r.bundle.routes  # both forms, the same bundle route


def test_a_route_declared_inline_and_top_level_is_the_top_level_one() -> None:
    config = HEAD.replace("    default: true\n", "    default: true\n    routing_preferences:\n      - {name: code, description: old}\n")
    r = compile_source(config + "routing_preferences:\n  - {name: code, description: new, models: [openai/gpt-4o-mini]}\n",
                       file="c.yaml")
    assert r.ok and [(x.name, x.description, x.pool) for x in r.bundle.routes] == [("code", "new", ("openai/gpt-4o-mini",))]
    assert [(c, line) for c, _, line, _ in diags(r)] == [("R323", 14)]


def test_plano_checks_are_diagnostics_with_line_and_column() -> None:
    r = build("""routing_preferences:
  - name: code
    description: write code
    models: [openai/gpt-4o, openai/gpt-5, openai/gpt-4o]
    selection_policy: {prefer: cheapest}
  - name: code
    description: again
    models: [openai/gpt-4o]
""")
    assert not r.ok
    found = [(c, line, col) for c, s, line, col in diags(r) if s == "error"]
    assert ("R305", 14, 29) in found  # openai/gpt-5 is not a declared provider
    assert ("V210", 14, 43) in found  # openai/gpt-4o twice in one pool
    assert ("R324", 15, 32) in found  # cheapest without a cost source (fastest needs none: archc measures latency)
    assert ("V210", 16, 5) in found  # the route name again
    two = build(COST + COST.split("\n", 1)[1] + "routing_preferences:\n  - {name: a, description: b, models: [gpt-4o]}\n")
    assert [(c, line) for c, s, line, _ in diags(two) if s == "error"] == [("R324", 13)]


def test_an_alias_may_be_a_pool_member() -> None:
    r = build("model_aliases:\n  arch.fast.v1: {target: gpt-4o-mini}\n"
              "routing_preferences:\n  - {name: quick, description: quick answers, models: [arch.fast.v1, gpt-4o]}\n")
    assert r.ok and r.bundle.routes[0].pool == ("openai/gpt-4o-mini", "openai/gpt-4o")


def test_diff_reports_a_reordered_pool_and_a_changed_policy() -> None:
    before = build(COST + "routing_preferences:\n  - {name: code, description: c, models: [gpt-4o, gpt-4o-mini]}\n").bundle
    reordered = build(COST + "routing_preferences:\n  - {name: code, description: c, models: [gpt-4o-mini, gpt-4o]}\n").bundle
    grown = build(COST + "routing_preferences:\n  - {name: code, description: c, models: [gpt-4o, gpt-4o-mini, "
                         "anthropic/claude-sonnet-4-6], selection_policy: {prefer: cheapest}}\n").bundle
    assert [(c.action, c.old, c.new) for c in diff_bundles(before, reordered)] == [
        ("retargeted", "openai/gpt-4o", "openai/gpt-4o-mini"),
        ("repooled", ["openai/gpt-4o", "openai/gpt-4o-mini"], ["openai/gpt-4o-mini", "openai/gpt-4o"])]
    changes = diff_bundles(before, grown)
    assert [(c.action, c.new) for c in changes] == [
        ("repooled", ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-6"]), ("repolicied", "cheapest")]
    assert changes[1].summary == "route code selection policy: prefer none -> prefer cheapest"
    assert diff_bundles(before, before) == []


def test_a_header_that_carries_a_credential_must_be_an_environment_reference() -> None:
    config = HEAD.replace("    default: true\n", "    default: true\n    headers:\n      ChatGPT-Account-Id: acct-123\n"
                                                  "      X-Api-Key: sk-literal-secret\n      Authorization: $UPSTREAM_AUTH\n")
    r = compile_source(config, file="c.yaml")
    assert [(d.code, d.severity.value, d.span.line, d.path) for d in r.diagnostics] == [
        ("V209", "error", 9, "model_providers[0].headers.X-Api-Key")]
    assert "sk-literal-secret" not in str(r.diagnostics)
    framing = compile_source(HEAD.replace("    default: true\n", "    default: true\n    headers: {Content-Length: '5', 'bad name': x}\n"),
                             file="c.yaml")
    assert [(d.code, d.path) for d in framing.diagnostics] == [("V211", "model_providers[0].headers.Content-Length"),
                                                              ("V211", "model_providers[0].headers.bad name")]
    sent = compile_source(HEAD.replace("    default: true\n", "    default: true\n    headers: {ChatGPT-Account-Id: acct, X-Token: $TOK}\n"),
                          file="c.yaml").bundle.providers[0].options
    assert (sent["header:ChatGPT-Account-Id"], sent["header:X-Token"]) == ("acct", "$TOK")


def test_passthrough_auth_cannot_share_the_clients_key_header_with_gateway_keys() -> None:
    config = HEAD.replace("    default: true\n", "    default: true\n    passthrough_auth: true\n")
    assert compile_source(config, file="c.yaml").ok
    keyed = compile_source(config + "gateway:\n  keys: [{name: team, key_env: TEAM_KEY}]\n", file="c.yaml")
    assert [(d.code, d.span.line) for d in keyed.errors] == [("V211", 7)]


def test_a_routing_budget_needs_prices_and_is_written_for_the_runtime() -> None:
    budget = "routing:\n  routing_budget: {max_switch_spend_pct: 15, cache_read_discount: 0.2, replenish_on_rebind: false}\n"
    r = build(COST + budget)
    assert r.ok, diags(r)
    assert r.bundle.extensions["sessions"]["budget"] == {"max_switch_spend_pct": 15, "cache_read_discount": 0.2}
    assert [(c, line) for c, _, line, _ in diags(r)] == [("V207", 14)]  # replenish_on_rebind: false, not served
    unpriced = build(budget.replace(", replenish_on_rebind: false", ""))
    assert [(c, s, line) for c, s, line, _ in diags(unpriced)] == [("R324", "error", 12)]
