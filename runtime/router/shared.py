"""Decisions shared by every replica: the decision cache's second level, in Redis.

Stage: runtime router (below cache.py, which consults it on a local miss). Imports the stdlib, orjson,
redis.asyncio and runtime.router.decision. Configured by ``gateway.decision_cache`` (``url``:
redis://..., ``ttl_s``, ``timeout_ms``); without it each replica keeps its own cache only.

The key is the local cache's (the bundle digest and the router's whole input), so a replica reuses
a decision another one made for the same agent turn, exactly: the same bundle, the same selected
conversation. A Redis that is down or slow never fails or holds up a request: each call is bounded
by ``timeout_ms``, a failure answers "not found" (the replica decides for itself), is counted
(``errors``, ``on_error``) and logged at most every 30 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from typing import Any, Callable, Mapping, TypeVar

import orjson

from runtime.router.decision import Decision

_T = TypeVar("_T")

log = logging.getLogger("archc.router")

DEFAULT_TTL_S = 3600.0
DEFAULT_TIMEOUT_S = 0.25
_WARN_EVERY_S = 30.0
# What a decision carries to other replicas: what the router said, not how this lookup went.
_FIELDS = ("route", "fallback", "confidence", "tokens", "probabilities", "prompt_tokens", "answer", "prefix_cached")


class BestEffortRedis:
    """A Redis client whose every call is bounded by ``timeout_s`` and whose failure reads as "not
    found" (``None``): counted (``errors``, ``on_error``) and logged at most every 30 s as ``failing``
    says. For what a replica can do without (a shared cache, shared session pins)."""

    PREFIX = ""  # each store's key space
    failing = "redis failed to %s (%s)"

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, on_error: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.timeout_s = timeout_s
        self.on_error = on_error
        self.clock = clock
        self.errors = 0
        self._warned_at = -math.inf
        self._pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=timeout_s, socket_timeout=timeout_s,
                                                              socket_connect_timeout=timeout_s, health_check_interval=0)
        self._client = aioredis.Redis(connection_pool=self._pool, retry=None)

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
                log.warning(self.failing, what, type(exc).__name__)
            return None

    async def _read(self, key: str, parse: Callable[[Any], _T]) -> _T | None:
        """What is kept under ``PREFIX + key``, ``parse``d from its JSON; None when absent, when Redis
        fails (counted, as ``_call``), or when ``parse`` refuses it (written by something else: the
        caller decides afresh and overwrites it)."""
        raw = await self._call("read", self._client.get(self.PREFIX + key))
        if raw is None:
            return None
        try:
            return parse(orjson.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    async def _write(self, key: str, value: Any, ttl_s: float) -> None:
        await self._call("write", self._client.set(self.PREFIX + key, orjson.dumps(value), ex=max(1, int(ttl_s))))

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
            await self._pool.disconnect()
        except Exception:  # closing a pool whose server is gone
            pass


class SharedDecisions(BestEffortRedis):
    PREFIX = "{archc-route}:"
    failing = "shared decision cache (redis) failed to %s (%s): this replica decides on its own until it answers"

    def __init__(self, url: str, *, ttl_s: float = DEFAULT_TTL_S, timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_error: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(url, timeout_s=timeout_s, on_error=on_error, clock=clock)
        self.ttl_s = ttl_s

    async def get(self, key: str) -> Decision | None:
        return await self._read(key, decision_from)

    async def put(self, key: str, decision: Decision) -> None:
        await self._write(key, {name: getattr(decision, name) for name in _FIELDS}, self.ttl_s)


def decision_from(data: Mapping[str, Any]) -> Decision:
    values = {name: data[name] for name in _FIELDS if name in data}
    if not isinstance(values.get("route"), (str, type(None))) or not isinstance(values.get("fallback"), (str, type(None))):
        raise ValueError("not a decision")
    if not isinstance(values.get("probabilities", {}), dict):
        raise ValueError("not a decision")
    return dataclasses.replace(Decision(None), **values)


def shared_for(gateway: Mapping[str, Any], on_error: Callable[[], None] | None = None) -> SharedDecisions | None:
    """The shared cache ``gateway.decision_cache`` names, or None (each replica's own cache only)."""
    cfg = gateway.get("decision_cache") if isinstance(gateway, Mapping) else None
    if not isinstance(cfg, Mapping) or not str(cfg.get("url", "")).startswith(("redis://", "rediss://")):
        return None
    return SharedDecisions(str(cfg["url"]), ttl_s=float(cfg.get("ttl_s", DEFAULT_TTL_S)),
                           timeout_s=float(cfg.get("timeout_ms", DEFAULT_TIMEOUT_S * 1000)) / 1000.0, on_error=on_error)
