"""Model resolution and routing semantics: requested model + router decision + Bundle -> Choice. Pure.

Stage: decide (runtime/decide/decide.py calls it after the router). Imports archc.bundle,
runtime.errors and the router's Decision type only.

Order: alias -> literal ``provider/model`` (or a provider's configured name) -> a bare model id
known to exactly one provider -> routing. With routes in the bundle the router runs on every
request (archgw semantics) and a matched route overrides the requested model; with
``routing.explicit_model_bypass`` a request naming a known alias, literal or bare id skips the
router. When the router names no route, the requested model (alias-resolved) is used, else the
bundle's default; with neither, UnknownModel (404) names the model and lists what exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from archc.bundle import Bundle, Provider, Resolution, Route
from runtime.errors import UnknownModel
from runtime.router.decision import Decision

# How the model was picked (``x-arch-why`` and ``/v1/route``'s ``why``).
WHY_ROUTE = "route"
WHY_DEFAULT = "default"
WHY_AFFINITY = "affinity"  # the session's pinned model (runtime/decide/affinity.py)
_LIST_LIMIT = 40


@dataclass(frozen=True)
class Choice:
    """The decision for one request: which provider serves it, and why."""

    provider: Provider
    why: str  # route | alias | literal | bare | default
    requested: str | None = None
    route: str | None = None
    fallback: str | None = None  # the router's reason when it was asked and named no route
    decision: Decision | None = None  # the router's own answer, when it was asked
    pool: tuple[str, ...] = ()  # a routed request's model pool in serving order (``provider`` first), when it has one
    switch: Any = None  # a routing budget's verdict on a warm session's turn (runtime/decide/budget.py's Switch)

    @property
    def router_ran(self) -> bool:
        return self.decision is not None

    @property
    def router_ms(self) -> float:
        return self.decision.router_ms if self.decision is not None else 0.0

    @property
    def cache_hit(self) -> bool:
        return self.decision is not None and self.decision.cache_hit

    @property
    def confidence(self) -> float | None:
        return self.decision.confidence if self.decision is not None else None


def wants_router(bundle: Bundle, resolution: Resolution | None) -> bool:
    """Whether the router must be asked for this request."""
    if not bundle.routes:
        return False
    if bundle.routing.explicit_model_bypass and resolution is not None:
        return False
    return True


def choose(bundle: Bundle, requested: str | None, resolution: Resolution | None, decision: Decision | None,
           rank: Callable[[Route], tuple[str, ...]] | None = None) -> Choice:
    """Apply the routing semantics; raises UnknownModel when nothing can serve the request.
    ``rank`` orders a routed request's model pool (runtime/decide/pool.py; default: as configured)."""
    extra: dict = {}
    if decision is not None:
        extra = {"decision": decision}
        route = bundle.route(decision.route) if decision.route else None
        if route is not None and decision.fallback is None:
            pool = rank(route) if rank is not None and len(route.pool) > 1 else route.pool
            provider = bundle.provider(pool[0])
            assert provider is not None  # Bundle validation guarantees route targets exist
            return Choice(provider, WHY_ROUTE, requested, route=route.name, pool=pool if len(pool) > 1 else (), **extra)
        extra["fallback"] = decision.fallback or ("no_match" if decision.route else "other")
    if resolution is not None:
        return Choice(resolution.provider, resolution.via, requested, **extra)
    default = bundle.default_provider
    if default is not None:
        return Choice(default, WHY_DEFAULT, requested, **extra)
    raise unknown_model(bundle, requested, decision)


def unknown_model(bundle: Bundle, requested: str | None, decision: Decision | None = None) -> UnknownModel:
    known = bundle.known_models()
    listed = ", ".join(known[:_LIST_LIMIT]) + (f", ... ({len(known)} in all)" if len(known) > _LIST_LIMIT else "")
    what = f"model {requested!r} is not known to this gateway" if requested else "no model was requested"
    return UnknownModel(f"{what} and the bundle has no default model; known models: {listed or '(none)'}",
                        code="model_not_found", decision=decision)
