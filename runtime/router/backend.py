"""Router backend protocol: blocking decisions on selected conversations, run in worker threads.

Stage: runtime router. Imports only the stdlib; runtime/router/ct2.py implements it with CTranslate2.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

from runtime.router.decision import RawDecision

Conversation = Sequence[Mapping[str, str]]

# How a backend decodes. FAST: cached route-table prefix, forced `{"route": "`, early stop once the
# name is unique. NAIVE: generate the whole answer and parse it (archgw's way; benchmarks, fallback mode).
METHOD_FAST = "fast"
METHOD_NAIVE = "naive"
METHODS = (METHOD_FAST, METHOD_NAIVE)


class RouterBackend(Protocol):
    """Blocking; called from worker threads, possibly concurrently. May raise: the service maps
    any exception to the ``error`` fallback. ``deadlines`` are ``time.monotonic()`` values."""

    @property
    def route_names(self) -> tuple[str, ...]: ...

    def decide_batch(self, conversations: Sequence[Conversation], deadlines: Sequence[float]) -> list[RawDecision]: ...

    def model_input(self, conversation: Conversation) -> str: ...

    def close(self) -> None: ...
