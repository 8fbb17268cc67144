"""Pinned sessions in Redis, shared by every replica (Plano 0.4's ``routing.session_cache: {type: redis}``).

Stage: live (state kept outside the process, beside the bundle generations; runtime/decide/affinity.py keeps the same
pins in process, pure). Imports the stdlib, orjson, redis.asyncio and runtime.decide.affinity.

A conversation whose turns visit several replicas stays on one model: each pin is one Redis string
(``{archc-session}:<name>``, the provider and route as JSON) that expires ``ttl_s`` after it was
last set; Redis bounds the count (``max_entries`` is the in-process store's). A Redis that is down
or slow never fails or holds up a request: each call is bounded by ``timeout_ms``, a failure reads
as "no pin" (the router decides, as for a new session), is counted (``errors``, ``on_error``) and
logged at most every 30 s.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Callable

import orjson

from runtime.decide.affinity import Pin, SessionPolicy

log = logging.getLogger("archc.sessions")

DEFAULT_TIMEOUT_S = 0.25
_WARN_EVERY_S = 30.0


class SharedSessions:
    PREFIX = "{archc-session}:"

    def __init__(self, policy: SessionPolicy, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_error: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio as aioredis

        self.policy = policy
        self.url = url
        self.timeout_s = timeout_s
        self.on_error = on_error
        self.clock = clock
        self.errors = 0
        self._warned_at = -math.inf
        self._pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=timeout_s, socket_timeout=timeout_s,
                                                              socket_connect_timeout=timeout_s, health_check_interval=0)
        self._client = aioredis.Redis(connection_pool=self._pool, retry=None)

    async def get(self, session: str) -> Pin | None:
        raw = await self._call("read", self._client.get(self.PREFIX + session))
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            provider, route = data["provider"], data.get("route")
        except (ValueError, TypeError, KeyError):
            return None  # written by something else: decide afresh (and overwrite it)
        if not isinstance(provider, str) or not isinstance(route, (str, type(None))):
            return None
        return Pin(provider, route)

    async def pin(self, session: str, pin: Pin) -> None:
        data = orjson.dumps({"provider": pin.provider, "route": pin.route})
        await self._call("write", self._client.set(self.PREFIX + session, data, ex=max(1, int(self.policy.ttl_s))))

    async def _call(self, what: str, call: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(call, timeout=self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.errors += 1
            if self.on_error is not None:
                self.on_error()
            if self.clock() - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = self.clock()
                log.warning("session store (redis) failed to %s (%s): sessions are routed afresh until it answers",
                            what, type(exc).__name__)
            return None

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
            await self._pool.disconnect()
        except Exception:  # closing a pool whose server is gone
            pass
