"""Shared rate-limit counters in Redis: one Lua script per request, on the Redis server's clock.

Stage: runtime rate limiting, a counter store (runtime.guard.ratelimit.backend). Imports redis.asyncio,
runtime.guard.ratelimit.backend and the standard library. Every gateway process using the same Redis
sees the same counters; a failure marks the store down briefly and raises BackendUnavailable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runtime.guard.ratelimit.backend import BackendUnavailable, Charge, Clock, Outcome


# KEYS: for each bucket, its log (zset: member "cost:id", score ms) and its running total.
# ARGV: request id, then per bucket: limit, window_ms, cost. Returns per bucket
# {allowed, remaining, reset_ms, retry_ms}. Uses the server clock so machines agree.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 2
local totals = {}
local ok = 1
for i = 1, n do
  local log, sum = KEYS[2*i-1], KEYS[2*i]
  local limit, window, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
  local total = tonumber(redis.call('GET', sum) or '0')
  if #old > 0 then
    for _, m in ipairs(old) do total = total - tonumber(string.match(m, '^(%d+):')) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
    if total < 0 then total = 0 end
    redis.call('SET', sum, total)
  end
  totals[i] = total
  if total + cost > limit then ok = 0 end
end
local out = {}
for i = 1, n do
  local log, sum = KEYS[2*i-1], KEYS[2*i]
  local limit, window, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local total = totals[i]
  if ok == 1 then
    redis.call('ZADD', log, now, cost .. ':' .. ARGV[1] .. ':' .. i)
    total = redis.call('INCRBY', sum, cost)
    redis.call('PEXPIRE', log, window + 1000)
    redis.call('PEXPIRE', sum, window + 1000)
    out[i] = {1, limit - total, window, 0}
  else
    local retry = window
    local need = total + cost - limit
    if need <= 0 then retry = 0 elseif cost <= limit then
      local freed = 0
      local items = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
      for j = 1, #items, 2 do
        freed = freed + tonumber(string.match(items[j], '^(%d+):'))
        if freed >= need then retry = tonumber(items[j+1]) + window - now; break end
      end
    end
    local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    local reset = 0
    if #newest > 0 then reset = tonumber(newest[2]) + window - now end
    local fits = 0
    if total + cost <= limit then fits = 1 end
    out[i] = {fits, limit - total, reset, retry}
  end
end
return out
"""


class RedisBackend:
    """Shared counters in Redis; one Lua script per request, short socket timeouts.

    After a failure the backend is skipped for ``down_for_s`` so a dead Redis costs one timeout
    per second, not one per request."""

    def __init__(self, url: str, *, timeout_s: float = 0.5, down_for_s: float = 1.0, max_connections: int = 8,
                 clock: Clock = time.monotonic) -> None:
        self.url = url
        self.clock = clock
        self.down_for_s = down_for_s
        self._down_until = 0.0
        # A bounded, blocking pool: a burst of requests queues for a few warm connections (each
        # script takes well under a millisecond) instead of opening one connection per request.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_s, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, health_check_interval=0,
        )
        self._client = aioredis.Redis(connection_pool=pool, retry=None)
        self._timeout_s = timeout_s
        self._script = self._client.register_script(_LUA)

    async def acquire(self, charges: Sequence[Charge]) -> list[Outcome]:
        if self.clock() < self._down_until:
            raise BackendUnavailable(f"redis at {_safe_url(self.url)} marked down after a recent failure", fresh=False)
        keys: list[str] = []
        args: list[Any] = [uuid.uuid4().hex]
        for key, limit, window, cost in charges:
            # One hash tag for every bucket: a multi-bucket script stays in one slot on Redis Cluster.
            keys += ["{archc-rl}" + key + ":log", "{archc-rl}" + key + ":sum"]
            args += [limit, int(window * 1000), cost]
        try:
            raw = await asyncio.wait_for(self._script(keys=keys, args=args), timeout=self._timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._down_until = self.clock() + self.down_for_s
            raise BackendUnavailable(f"redis at {_safe_url(self.url)}: {type(exc).__name__}") from exc
        return [
            Outcome(bool(a), int(limit), int(rem), int(reset) / 1000.0, int(retry) / 1000.0)
            for (a, rem, reset, retry), (_k, limit, _w, _c) in zip(raw, charges)
        ]

    def describe(self) -> str:
        return f"redis at {_safe_url(self.url)} (shared by every gateway process using it)"

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._client.connection_pool.disconnect()


def _safe_url(url: str) -> str:
    """A Redis URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
