"""Explain: how a requested model string resolves in a bundle, offline.

Stage: post-emit tool. Imports archc.bundle only. alias chain -> literal -> provider -> URL and
wire format, plus what routing may do to the request, using the runtime's own ``resolve_model``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from archc.bundle import Bundle, Deadline, Provider, Route
from archc.output import json_text


@dataclass(frozen=True)
class Explanation:
    requested: str
    via: str | None  # alias | literal | bare | None (does not resolve)
    chain: tuple[str, ...] = ()
    provider: Provider | None = None
    pinned: bool = False
    routing_note: str = ""
    suggestions: tuple[str, ...] = field(default_factory=tuple)
    deadline: Deadline | None = None  # of a request served by ``provider`` (routing may pick another)
    egress: tuple[str, str] | None = None  # (proxy, trust) in this environment, when the caller can tell

    @property
    def found(self) -> bool:
        return self.provider is not None

    def to_dict(self) -> dict[str, Any]:
        p = self.provider
        return {
            "requested": self.requested,
            "resolves": self.found,
            "via": self.via,
            "chain": list(self.chain),
            "pinned": self.pinned,
            "provider": None if p is None else {
                "name": p.name, "provider": p.provider, "model": p.model, "endpoint": p.endpoint,
                "responses_endpoint": p.responses_endpoint, "wire": p.wire, "auth": p.auth, "key_env": p.key_env, "served": p.served, "default": p.default,
            },
            "routing": self.routing_note,
            "deadline": None if self.deadline is None else {"ms": self.deadline.ms, "source": self.deadline.source},
            "egress": None if self.egress is None else {"proxy": self.egress[0], "trust": self.egress[1]},
            "suggestions": list(self.suggestions),
        }


def explain(bundle: Bundle, requested: str,
            egress: Callable[[Provider], tuple[str, str]] | None = None) -> Explanation:
    """``egress``, given by the CLI (it may read the runtime's proxy and trust rules): the provider's
    effective proxy and trust in the current environment."""
    note = _routing_note(bundle)
    resolution = bundle.resolve_model(requested)
    if resolution is None:
        candidates = [*bundle.known_models(), *dict.fromkeys(p.model for p in bundle.providers)]
        close = difflib.get_close_matches(requested, candidates, n=3)
        fallback = bundle.default_model or "no default model (the request is answered 404 unless routed)"
        if bundle.routes:
            note = f"not a known model: the router picks a route; with no match the default is used: {fallback}"
        else:
            note = f"not a known model: the default is used: {fallback}"
        return Explanation(requested, None, routing_note=note, suggestions=tuple(close))
    alias = bundle.alias(requested)
    return Explanation(requested, resolution.via, tuple(resolution.chain), resolution.provider,
                       pinned=bool(alias and alias.pinned), routing_note=note,
                       deadline=bundle.deadline(resolution.provider.name),
                       egress=egress(resolution.provider) if egress is not None else None)


def _routing_note(bundle: Bundle) -> str:
    if not bundle.routes:
        return "no routes: the request goes to this model as named"
    names = ", ".join(_route_text(r) for r in bundle.routes)
    router = bundle.router
    runs = "the in-process router model"
    if router is not None and router.remote:
        how = ", its completions API with the prompt rendered through routing.chat_template" if router.remote_api == "completions" else ""
        runs = f"the router on {router.provider!r} ({bundle.router_endpoint() or '?'}{how})"
    if bundle.routing.explicit_model_bypass:
        return f"explicit_model_bypass is on: naming this model skips {runs} (routes: {names})"
    return (f"{runs} decides on every request (archgw semantics); a matched route overrides this model "
            f"(routes: {names}); no match keeps it")


def _route_text(route: Route) -> str:
    """A route's name, and its model pool in preference order and its policy when it has them."""
    if len(route.pool) < 2 and route.policy == "none":
        return route.name
    policy = f"; prefer {route.policy}" if route.policy != "none" else ""
    return f"{route.name} [pool: {' > '.join(route.pool)}{policy}]"


def format_text(e: Explanation) -> str:
    lines = [f"model {e.requested!r}"]
    if not e.found:
        lines.append("  does not resolve: not an alias, provider name or unique model id in this bundle")
        if e.suggestions:
            lines.append("  did you mean: " + ", ".join(e.suggestions))
        lines.append(f"  routing: {e.routing_note}")
        return "\n".join(lines) + "\n"
    p = e.provider
    assert p is not None
    kind = {"alias": "alias" + (" (pinned in archc.lock)" if e.pinned else " (floating)"),
            "literal": "provider name / model literal", "bare": "bare model id (unique)"}.get(e.via or "", e.via)
    lines.append(f"  via:      {kind}")
    if len(e.chain) > 1:
        lines.append("  chain:    " + " -> ".join(e.chain))
    lines.append(f"  provider: {p.name} ({p.provider}; model sent upstream: {p.model})")
    lines.append(f"  endpoint: POST {p.endpoint}")
    if p.options.get("endpoint_rule"):
        lines.append(f"  url rule: {p.options['endpoint_rule']}")
    lines.append(f"  wire:     {p.wire}")
    lines.append("  responses: " + (f"passed through to POST {p.responses_endpoint}" if p.responses_endpoint
                                    else f"translated to {p.wire}"))
    if e.egress is not None:
        lines.append(f"  proxy:    {e.egress[0]}")
        if e.egress[1]:
            lines.append(f"  trust:    {e.egress[1]}")
    key = f", key from ${p.key_env}" if p.key_env else ", no key"
    lines.append(f"  auth:     {p.auth}{key}")
    if e.deadline is not None:
        d = e.deadline
        lines.append(f"  deadline: {d.ms} ms end to end ({d.source})" if d.ms else f"  deadline: none ({d.source})")
    if not p.served:
        lines.append("  served:   no (known provider, not served by this runtime yet: requests are refused)")
    lines.append(f"  routing:  {e.routing_note}")
    return "\n".join(lines) + "\n"


def format_json(e: Explanation) -> str:
    return json_text(e.to_dict(), indent=2) + "\n"
