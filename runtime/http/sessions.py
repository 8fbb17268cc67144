"""Per-session routing status: the last decision for each Claude Code session (bounded LRU).

Stage: runtime data, pure (no starlette, no httpx, no I/O); the clock is injected. Stores
route, provider/model, router time and cache hit/miss, never prompt text. Imports only stdlib.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

# The header Claude Code sends on every request of a session (also in its status line JSON).
SESSION_HEADER = "x-claude-code-session-id"
DEFAULT_CAPACITY = 1024
MAX_SESSION_ID_LENGTH = 128


@dataclass(frozen=True)
class SessionStatus:
    """The last routing decision seen for one session, plus counters over the session's life.

    ``route`` is the matched route name, or None on a fallback (``fallback`` says why).
    ``router_ms`` is what the router cost for that request (a lookup's time on a cache hit).
    ``main`` is False for side requests (no tools: title generation, quota checks);
    ``requests``/``router_runs``/``cache_hits`` count every request of the session.
    """

    session_id: str
    route: str | None
    fallback: str | None
    provider: str | None
    model: str | None
    router_ms: float
    cache_hit: bool
    main: bool
    at: float
    requests: int = 1
    router_runs: int = 0
    cache_hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def valid_session_id(value: str | None) -> bool:
    """A session id we are willing to key on: short, printable ASCII, no spaces."""
    if not value or len(value) > MAX_SESSION_ID_LENGTH:
        return False
    return all(33 <= ord(ch) < 127 for ch in value)


class SessionStore:
    """Last decision per session id, least recently updated evicted first.

    ``record`` keeps the newest main-conversation decision as the status: a side request only
    becomes the status when the session has had no main request yet, so the status line keeps
    showing the model answering the conversation while Claude Code generates a title.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError("session store capacity must be at least 1")
        self.capacity = capacity
        self._clock = clock
        self._items: OrderedDict[str, SessionStatus] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def record(
        self,
        session_id: str | None,
        *,
        route: str | None,
        fallback: str | None,
        provider: str | None,
        model: str | None,
        router_ms: float,
        cache_hit: bool,
        router_ran: bool,
        main: bool = True,
    ) -> SessionStatus | None:
        """Remember one request's decision; returns the session's status (None: id not valid)."""
        if not valid_session_id(session_id):
            return None
        assert session_id is not None
        previous = self._items.pop(session_id, None)
        ran = 1 if router_ran and not cache_hit else 0
        hit = 1 if cache_hit else 0
        if previous is not None and previous.main and not main:
            # A side request: count it, keep showing the main conversation's decision.
            status = replace(
                previous,
                requests=previous.requests + 1,
                router_runs=previous.router_runs + ran,
                cache_hits=previous.cache_hits + hit,
            )
        else:
            status = SessionStatus(
                session_id=session_id,
                route=route,
                fallback=fallback,
                provider=provider,
                model=model,
                router_ms=round(float(router_ms), 3),
                cache_hit=bool(cache_hit),
                main=main,
                at=self._clock(),
                requests=(previous.requests if previous else 0) + 1,
                router_runs=(previous.router_runs if previous else 0) + ran,
                cache_hits=(previous.cache_hits if previous else 0) + hit,
            )
        self._items[session_id] = status
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return status

    def get(self, session_id: str) -> SessionStatus | None:
        return self._items.get(session_id) if valid_session_id(session_id) else None
