"""Rate-limit counter stores: what the limiter asks of one, and what one answers.

Stage: runtime rate limiting, below the limiter. Imports only the standard library;
runtime/guard/ratelimit/memory.py and runtime/guard/ratelimit/redis_backend.py implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

Clock = Callable[[], float]

# (bucket key, limit, window_s, cost): one bucket a request charges.
Charge = tuple[str, int, float, int]


@dataclass(frozen=True)
class Outcome:
    """One bucket's answer. Times in seconds from now."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float


class BackendUnavailable(Exception):
    """The shared counter store could not be reached in time. ``fresh`` is False while the backend
    stays marked down after a failure (those are counted, not logged again)."""

    def __init__(self, message: str, *, fresh: bool = True) -> None:
        super().__init__(message)
        self.fresh = fresh


class Backend(Protocol):
    async def acquire(self, charges: Sequence[Charge]) -> list[Outcome]:
        """One outcome per charge, in order. All-or-nothing: every bucket is charged, or none.
        Raises BackendUnavailable when the store cannot answer."""
        ...

    async def aclose(self) -> None: ...
