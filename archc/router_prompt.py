"""Router prompt: the exact Arch-Router template with ``{routes}`` rendered at build time.

Stage: emit helper. Imports jinja2 only. The template is byte-exact (856 bytes, sha256 below;
see ../shared/notes/ARCH_ROUTER.md section 2): the model was trained on it, quirks included.
The runtime later replaces only ``{conversation}``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import jinja2

ROUTER_MODEL = "katanemo/Arch-Router-1.5B"
ARCHGW_ROUTER_NAMES = frozenset({"Arch-Router", "arch-router", "Arch-Router-1.5B", "katanemo/Arch-Router-1.5B"})

ARCH_ROUTER_TEMPLATE = (
    "\nYou are a helpful assistant designed to find the best suited route.\n"
    "You are provided with route description within <routes></routes> XML tags:\n"
    "<routes>\n{routes}\n</routes>\n\n<conversation>\n{conversation}\n</conversation>\n\n"
    "Your task is to decide which route is best suit with user intent on the conversation in "
    "<conversation></conversation> XML tags.  Follow the instruction:\n"
    "1. If the latest intent from user is irrelevant or user intent is full filled, response with other route "
    "{\"route\": \"other\"}.\n"
    "2. You must analyze the route descriptions and find the best match route for user latest intent.\n"
    "3. You only response the name of the route that best matches the user's request, use the exact name in "
    "the <routes></routes>.\n\n"
    "Based on your analysis, provide your response in the following JSON formats if you decide to match any route:\n"
    "{\"route\": \"route_name\"}\n"
)
TEMPLATE_SHA256 = "8004153a5e58066139d261d56392543ef29c63487ad4872aaba4d29929890dde"
CONVERSATION_PLACEHOLDER = "{conversation}"


def template_sha256() -> str:
    return hashlib.sha256(ARCH_ROUTER_TEMPLATE.encode("utf-8")).hexdigest()


def routes_json(routes: Iterable[tuple[str, str]]) -> str:
    """Compact JSON array of {name, description} in config order, exactly as Arch-Router expects."""
    items = [{"name": name, "description": description} for name, description in routes]
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def render_prompt(routes: Iterable[tuple[str, str]]) -> str:
    """The template with ``{routes}`` filled and ``{conversation}`` left for the runtime.

    Rendered with Jinja2 (the one ``{routes}`` placeholder becomes ``{{ routes }}``; the
    template contains no other Jinja2 syntax), trailing newline kept, no autoescaping.
    """
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    source = ARCH_ROUTER_TEMPLATE.replace("{routes}", "{{ routes }}")
    return env.from_string(source).render(routes=routes_json(routes))
