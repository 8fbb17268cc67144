"""Router backend protocol: blocking decisions on selected conversations, run in worker threads.

Stage: runtime router. Imports only the stdlib; runtime/router/ct2.py implements it with CTranslate2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

Conversation = Sequence[Mapping[str, str]]

# How a backend decodes. FAST: cached route-table prefix, forced `{"route": "`, early stop once the
# name is unique. NAIVE: generate the whole answer and parse it (archgw's way; benchmarks, fallback mode).
METHOD_FAST = "fast"
METHOD_NAIVE = "naive"
METHODS = (METHOD_FAST, METHOD_NAIVE)


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


class RouterBackend(Protocol):
    """Blocking; called from worker threads, possibly concurrently. May raise: the service maps
    any exception to the ``error`` fallback. ``deadlines`` are ``time.monotonic()`` values."""

    @property
    def route_names(self) -> tuple[str, ...]: ...

    def decide_batch(self, conversations: Sequence[Conversation], deadlines: Sequence[float]) -> list[RawDecision]: ...

    def model_input(self, conversation: Conversation) -> str: ...

    def close(self) -> None: ...
