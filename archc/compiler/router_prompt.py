"""Router prompt: the exact Arch-Router template with ``{routes}`` rendered at build time.

Stage: emit helper. Imports jinja2 only. The template is byte-exact (856 bytes, sha256 below;
see ../shared/notes/ARCH_ROUTER.md section 2): the model was trained on it, quirks included.
The runtime later replaces only ``{conversation}``.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import jinja2

from archc.bundle import ARCH_ROUTER_TEMPLATE, ARCH_ROUTER_TEMPLATE_SHA256
from archc.output import json_text

ROUTER_MODEL = "katanemo/Arch-Router-1.5B"
ARCHGW_ROUTER_NAMES = frozenset({"Arch-Router", "arch-router", "Arch-Router-1.5B", "katanemo/Arch-Router-1.5B"})

TEMPLATE_SHA256 = ARCH_ROUTER_TEMPLATE_SHA256
CONVERSATION_PLACEHOLDER = "{conversation}"


def template_sha256() -> str:
    return hashlib.sha256(ARCH_ROUTER_TEMPLATE.encode("utf-8")).hexdigest()


def routes_json(routes: Iterable[tuple[str, str]]) -> str:
    """Compact JSON array of {name, description} in config order, exactly as Arch-Router expects."""
    items = [{"name": name, "description": description} for name, description in routes]
    return json_text(items, separators=(",", ":"))


def render_prompt(routes: Iterable[tuple[str, str]]) -> str:
    """The template with ``{routes}`` filled and ``{conversation}`` left for the runtime.

    Rendered with Jinja2 (the one ``{routes}`` placeholder becomes ``{{ routes }}``; the
    template contains no other Jinja2 syntax), trailing newline kept, no autoescaping.
    """
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    source = ARCH_ROUTER_TEMPLATE.replace("{routes}", "{{ routes }}")
    return env.from_string(source).render(routes=routes_json(routes))
