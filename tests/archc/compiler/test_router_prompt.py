"""The router prompt is the exact Arch-Router template with {routes} filled (ARCH_ROUTER.md section 2)."""

import hashlib
import json

from archc.compiler.router_prompt import ARCH_ROUTER_TEMPLATE, TEMPLATE_SHA256, render_prompt, routes_json


def test_template_is_byte_exact() -> None:
    raw = ARCH_ROUTER_TEMPLATE.encode("utf-8")
    assert len(raw) == 856
    assert hashlib.sha256(raw).hexdigest() == TEMPLATE_SHA256


def test_worked_example_from_archgw() -> None:
    routes = [("Image generation", "generating image")]
    assert routes_json(routes) == '[{"name":"Image generation","description":"generating image"}]'
    prompt = render_prompt(routes)
    assert prompt == ARCH_ROUTER_TEMPLATE.replace("{routes}", routes_json(routes))
    conversation = [{"role": "user", "content": "hi"}]
    full = prompt.replace("{conversation}", json.dumps(conversation, separators=(",", ":")))
    assert '<conversation>\n[{"role":"user","content":"hi"}]\n</conversation>' in full
    assert full.endswith('{"route": "route_name"}\n') and full.startswith("\nYou are a helpful assistant")


def test_non_ascii_and_jinja_like_text_are_literal() -> None:
    routes = [("résumé", "write {{ not jinja }} and {% neither %} — ünïcode")]
    prompt = render_prompt(routes)
    assert routes_json(routes) in prompt and "\\u" not in prompt
    assert prompt.count("{conversation}") == 1
