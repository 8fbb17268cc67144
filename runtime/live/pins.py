"""Pinned sessions in Redis, shared by every replica (Plano 0.4's ``routing.session_cache: {type: redis}``).

Stage: live (state kept outside the process, beside the bundle generations; runtime/decide/affinity.py keeps the same
pins in process, pure). Imports the stdlib, runtime.decide.affinity and runtime.router.shared (the bounded Redis client).

A conversation whose turns visit several replicas stays on one model: each pin is one Redis string
(``{archc-session}:<name>``, the provider and route as JSON) that expires ``ttl_s`` after it was
last set; Redis bounds the count (``max_entries`` is the in-process store's). A Redis that is down
or slow never fails or holds up a request: each call is bounded by ``timeout_ms``, a failure reads
as "no pin" (the router decides, as for a new session), is counted (``errors``, ``on_error``) and
logged at most every 30 s (runtime/router/shared.py's ``BestEffortRedis``, as the shared decision cache).
"""

from __future__ import annotations

import time
from typing import Callable

from runtime.decide.affinity import Pin, SessionPolicy
from runtime.router.shared import DEFAULT_TIMEOUT_S, BestEffortRedis


class SharedSessions(BestEffortRedis):
    PREFIX = "{archc-session}:"
    failing = "session store (redis) failed to %s (%s): sessions are routed afresh until it answers"

    def __init__(self, policy: SessionPolicy, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_error: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(url, timeout_s=timeout_s, on_error=on_error, clock=clock)
        self.policy = policy

    async def get(self, session: str) -> Pin | None:
        return await self._read(session, pin_from)

    async def pin(self, session: str, pin: Pin) -> None:
        await self._write(session, {"provider": pin.provider, "route": pin.route, "default": pin.default,
                                    "baseline": pin.baseline, "spend": pin.spend, "switches": pin.switches}, self.policy.ttl_s)


def pin_from(data: dict) -> Pin:
    """A pin as ``SharedSessions.pin`` writes it (totals absent: zero); ValueError for anything else."""
    provider, route, default = data["provider"], data.get("route"), data.get("default")
    if not isinstance(provider, str) or not all(isinstance(v, (str, type(None))) for v in (route, default)):
        raise ValueError("not a pin")
    return Pin(provider, route, default, float(data.get("baseline", 0.0)), float(data.get("spend", 0.0)),
               int(data.get("switches", 0)))
