"""The decision point the runtime calls: messages in, a Decision out; never raises.

Contract used by runtime/endpoints.py, `archc route` and `archc test`:

    router = build_router(bundle, model_dir=None | Path, ...)   # in the lifespan
    decision = await router.decide(openai_messages)             # never raises, honours routing.timeout_ms
    await router.aclose()

Fallback reasons (``Decision.fallback``), also used in ``x-arch-fallback`` and metrics:
``no_routes`` (bundle has no routes), ``no_router_model`` (no model installed), ``other``,
``no_match`` (a name not in the route list), ``low_confidence``, ``malformed`` (answer not parseable),
``error`` (backend crashed), ``timeout`` (deadline overrun), ``empty_conversation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from archc.bundle import Bundle


@dataclass(frozen=True)
class Decision:
    route: str | None
    fallback: str | None = None
    confidence: float | None = None
    router_ms: float = 0.0
    tokens: int = 0
    cache_hit: bool = False
    probabilities: Mapping[str, float] = field(default_factory=dict)


class RouterService(Protocol):
    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision: ...

    async def aclose(self) -> None: ...


class NullRouter:
    """Used when the bundle has no routes or no router model is installed: always falls back."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        return Decision(route=None, fallback=self.reason)

    async def aclose(self) -> None:
        return None


def build_router(bundle: Bundle, *, model_dir: Path | None = None) -> RouterService:
    """The router for ``bundle``: NullRouter when there are no routes or no model."""
    if not bundle.routes or bundle.router is None:
        return NullRouter("no_routes")
    if model_dir is None:
        return NullRouter("no_router_model")
    raise NotImplementedError("CTranslate2 router backend: see issue 4")
