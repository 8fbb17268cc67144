"""Semantic diff: change kinds, breaking flags, renderings."""

import json

from archc.compiler import compile_source
from archc.review.diff import DiffFormat, diff_bundles, exit_code, render

OLD = """version: v0.3.0
listeners: [{type: model, name: llm}]
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
    default: true
    routing_preferences:
      - {name: coding, description: write code}
      - {name: review, description: review code}
  - model: openai/o3
    access_key: $OPENAI_API_KEY
model_aliases:
  arch.fast.v1: {target: gpt-4o}
  floaty: {target: gpt-4o}
"""


def bundle(text: str):
    result = compile_source(text, file="c.yaml")
    assert result.ok, result.diagnostics
    return result.bundle


def test_identical_bundles_have_no_changes() -> None:
    changes = diff_bundles(bundle(OLD), bundle(OLD))
    assert changes == [] and exit_code(changes) == 0
    assert "no semantic changes" in render(changes, DiffFormat.TEXT)


def test_route_and_provider_and_default_changes() -> None:
    new = """version: v0.3.0
listeners: [{type: model, name: llm}]
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_KEY
    routing_preferences:
      - {name: coding, description: write new code}
  - model: openai/o3
    access_key: $OPENAI_API_KEY
  - model: anthropic/claude-sonnet-4-5
    default: true
    routing_preferences:
      - {name: docs, description: write docs}
model_aliases:
  arch.fast.v1: {target: gpt-4o}
  floaty: {target: o3}
"""
    changes = diff_bundles(bundle(OLD), bundle(new))
    got = {(c.kind, c.action, c.subject) for c in changes}
    assert got == {
        ("route", "redescribed", "coding"), ("route", "removed", "review"), ("route", "added", "docs"),
        ("provider", "changed", "openai/gpt-4o"), ("provider", "added", "anthropic/claude-sonnet-4-5"),
        ("default", "changed", "default_model"), ("alias", "retargeted", "floaty"),
    }
    provider_change = next(c for c in changes if c.kind == "provider" and c.action == "changed")
    assert provider_change.old == {"key_env": "OPENAI_API_KEY"} and provider_change.new == {"key_env": "OPENAI_KEY"}
    assert not any(c.breaking for c in changes) and exit_code(changes) == 3


def test_pinned_retarget_is_breaking() -> None:
    changes = diff_bundles(bundle(OLD), bundle(OLD.replace("arch.fast.v1: {target: gpt-4o}", "arch.fast.v1: {target: o3}")))
    (c,) = changes
    assert (c.kind, c.action, c.old, c.new, c.breaking) == ("alias", "retargeted", "openai/gpt-4o", "openai/o3", True)
    assert exit_code(changes) == 4
    assert "[BREAKING]" in render(changes, DiffFormat.TEXT)
    md = render(changes, DiffFormat.MARKDOWN)
    assert md.startswith("### :rotating_light:") and "| **breaking** | alias `arch.fast.v1` |" in md
    assert render(changes, DiffFormat.GITHUB).startswith("::error title=archc diff (alias)::")
    doc = json.loads(render(changes, DiffFormat.JSON))
    assert doc["breaking"] is True and doc["exit_code"] == 4 and doc["changes"][0]["subject"] == "arch.fast.v1"


def test_route_retarget_and_new_alias() -> None:
    new = OLD.replace("      - {name: review, description: review code}\n", "").replace(
        "  - model: openai/o3\n    access_key: $OPENAI_API_KEY\n",
        "  - model: openai/o3\n    access_key: $OPENAI_API_KEY\n    routing_preferences:\n"
        "      - {name: review, description: review code}\n") + "  arch.fast.v2: {target: o3}\n"
    changes = diff_bundles(bundle(OLD), bundle(new))
    got = {(c.kind, c.action, c.subject, c.old, c.new) for c in changes}
    assert ("route", "retargeted", "review", "openai/gpt-4o", "openai/o3") in got
    assert ("alias", "added", "arch.fast.v2", None, "openai/o3") in got
    assert exit_code(changes) == 3


def test_who_decides_and_how_the_router_server_is_asked_are_changes(tmp_path) -> None:
    from archc.compiler import compile_path

    (tmp_path / "t1.jinja").write_text("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>")
    (tmp_path / "t2.jinja").write_text("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]")
    server = OLD.replace("model_aliases:", "  - name: arch-router\n    model: arch/router\n    base_url: http://router:8080\n"
                                             "model_aliases:")

    def built(routing: str):
        path = tmp_path / "c.yaml"
        path.write_text(server + "routing:\n" + routing)
        result = compile_path(path, lock_mode="ignore")
        assert result.ok, result.diagnostics
        return result.bundle

    local = built("  model: Arch-Router\n")
    chat = built("  llm_provider: arch-router\n")
    raw = built("  llm_provider: arch-router\n  remote_api: completions\n  chat_template: t1.jinja\n")
    raw2 = built("  llm_provider: arch-router\n  remote_api: completions\n  chat_template: t2.jinja\n")
    assert diff_bundles(local, built("  model: Arch-Router\n")) == []
    for old, new, keys in [(local, chat, {"provider", "backend", "remote_api"}), (chat, raw, {"remote_api", "chat_template_sha256"}),
                           (raw, raw2, {"chat_template_sha256"})]:
        [change] = [c for c in diff_bundles(old, new) if c.kind == "router"]  # (and arch-router becomes served)
        assert (change.kind, change.action) == ("router", "changed")
        assert {k for k in {*change.old, *change.new} if change.old.get(k) != change.new.get(k)} == keys
    assert raw.router.chat_template["template"].startswith("{% for m in messages %}<|")
    assert chat.router.chat_template is None and chat.router.remote_api == "chat"
