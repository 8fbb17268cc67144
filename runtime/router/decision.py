"""What a router decides, and the service contract every router implements. Stdlib only.

Stage: router (the types). ``RawDecision`` is a backend's answer (runtime/router/backend.py);
``Decision`` what the service makes of it after thresholds and deadlines; ``RouterService`` the one
call the decide stage makes (runtime/decide/decide.py). No CTranslate2 here: importing these types
never loads a model library.

Fallback reasons (``Decision.fallback``), also used in ``x-arch-fallback`` and metrics:
``no_routes`` (bundle has no routes), ``no_router_model`` (no model installed), ``other``,
``no_match`` (a name not in the route list), ``low_confidence``, ``malformed`` (answer not parseable),
``error`` (backend crashed), ``timeout`` (deadline overrun), ``empty_conversation``,
``router_unavailable`` (the remote router's server failed repeatedly: skipped until a probe answers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

FALLBACKS = ("no_routes", "no_router_model", "other", "no_match", "low_confidence", "malformed", "error",
             "timeout", "empty_conversation", "router_unavailable")


@dataclass(frozen=True)
class RawDecision:
    """A backend's answer before the service applies the confidence threshold.

    ``route`` is a listed route name or None with ``fallback`` saying why (``other``, ``no_match``,
    ``malformed``, ``timeout``). ``confidence`` is the probability of the chosen name's first token
    among the allowed first tokens; ``probabilities`` maps every name (``other`` included) to its
    probability along the decoded path. ``answer`` is the model's text after the forced prefix.
    """

    route: str | None
    fallback: str | None = None
    confidence: float | None = None
    probabilities: Mapping[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefix_cached: bool = False
    answer: str = ""


@dataclass(frozen=True)
class Decision:
    """The router's decision for one conversation: a route, or None and the fallback reason."""

    route: str | None
    fallback: str | None = None
    confidence: float | None = None
    router_ms: float = 0.0
    tokens: int = 0
    cache_hit: bool = False
    probabilities: Mapping[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    answer: str = ""
    prefix_cached: bool = False  # the route-table prefix came from CTranslate2's static-prompt cache


class RouterService(Protocol):
    """Messages (OpenAI chat shape) in, a Decision out; never raises, honours ``routing.timeout_ms``."""

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision: ...

    async def aclose(self) -> None: ...


class NullRouter:
    """Used when the bundle has no routes or no router model is installed: always falls back."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        return Decision(route=None, fallback=self.reason)

    async def aclose(self) -> None:
        return None


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.monotonic()`` reading), as decisions report them."""
    return round((time.monotonic() - start) * 1000, 3)


def thresholded(route: str | None, fallback: str | None, confidence: float | None,
                threshold: float | None) -> tuple[str | None, str | None]:
    """``routing.confidence_threshold`` applied: a route named with less confidence falls back (``low_confidence``);
    without a confidence (no logprobs) there is nothing to compare."""
    if route is not None and threshold is not None and confidence is not None and confidence < threshold:
        return None, "low_confidence"
    return route, fallback
