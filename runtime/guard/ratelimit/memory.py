"""In-process rate-limit counters: one exact sliding-window log per bucket.

Stage: runtime rate limiting, a counter store (runtime.guard.ratelimit.backend). Imports
runtime.guard.ratelimit.backend and the standard library.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from runtime.guard.ratelimit.backend import Charge, Clock, Outcome


@dataclass
class _Log:
    window: float
    entries: deque = field(default_factory=deque)  # (timestamp, cost), oldest first
    total: int = 0


class MemoryBackend:
    """In-process sliding-window logs; atomic because nothing awaits between check and commit."""

    SWEEP_EVERY = 1024

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._logs: dict[str, _Log] = {}
        self._calls = 0

    async def acquire(self, charges: Sequence[Charge]) -> list[Outcome]:
        """``charges``: (bucket key, limit, window_s, cost). All-or-nothing across the buckets."""
        now = self.clock()
        self._calls += 1
        if self._calls % self.SWEEP_EVERY == 0:
            self._sweep(now)
        logs = []
        for key, _limit, window, _cost in charges:
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = _Log(window)
            while log.entries and log.entries[0][0] <= now - window:
                log.total -= log.entries.popleft()[1]
            logs.append(log)
        allowed = all(log.total + cost <= limit for log, (_, limit, _, cost) in zip(logs, charges))
        outcomes = []
        for log, (_key, limit, window, cost) in zip(logs, charges):
            if allowed:
                log.entries.append((now, cost))
                log.total += cost
                outcomes.append(Outcome(True, limit, limit - log.total, window, 0.0))
            else:
                retry = _retry_after([(t, c) for t, c in log.entries], log.total, cost, limit, window, now)
                reset = (log.entries[-1][0] + window - now) if log.entries else 0.0
                outcomes.append(Outcome(log.total + cost <= limit, limit, limit - log.total, reset, retry))
        return outcomes

    def _sweep(self, now: float) -> None:
        # Buckets whose every entry has expired hold nothing: drop them so memory follows live keys.
        for key in [k for k, log in self._logs.items() if not log.entries or log.entries[-1][0] <= now - log.window]:
            del self._logs[key]

    async def aclose(self) -> None:
        self._logs.clear()


def _retry_after(entries: Iterable[tuple[float, int]], total: int, cost: int, limit: int, window: float, now: float) -> float:
    need = total + cost - limit
    if need <= 0:
        return 0.0
    if cost > limit:
        return window  # never admissible; tell the caller to wait a full window anyway
    freed = 0
    for t, c in entries:
        freed += c
        if freed >= need:
            return max(0.0, t + window - now)
    return window
