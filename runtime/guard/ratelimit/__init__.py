"""Rate limits: exact sliding-window counters (memory or Redis) and a pure ASGI middleware.

Stage: runtime, after gateway keys, before the endpoints. This file only re-exports; the package
imports archc.bundle, runtime.guard.auth, runtime.errors, redis.asyncio, prometheus_client and the
standard library, and no starlette.

A rule admits a request when the cost already spent in the last ``window_s`` seconds plus this
request's cost stays within ``limit``: "L per minute" means at most L in any 60-second span,
whatever the number of gateway processes (the Redis backend keeps one log per bucket and updates
it with one Lua script, using the Redis server's clock, so every machine sees the same counters).

Modules, top down (each imports only those below it):

    middleware.py     ASGI: body buffering, 429/413/503 in the client's format, x-ratelimit-* headers
    limiter.py        RateLimiter (rules + store -> Verdict, fail open/closed), LimiterMetrics, backend_for
    memory.py         MemoryBackend: in-process sliding-window logs
    redis_backend.py  RedisBackend: shared logs updated by one Lua script
    backend.py        the store protocol: Charge, Outcome, BackendUnavailable, Clock
    rules.py          Rule, RequestInfo, rules_from_bundle, bucket_key (pure; prompt tokens: runtime.wire.tokens)
"""

from runtime.guard.ratelimit.backend import Backend, BackendUnavailable, Charge, Clock, Outcome
from runtime.guard.ratelimit.limiter import ON_UNAVAILABLE, LimiterMetrics, RateLimiter, Verdict, backend_for
from runtime.guard.ratelimit.memory import MemoryBackend
from runtime.guard.ratelimit.middleware import DEFAULT_MAX_BODY_BYTES, LIMITED_PATHS, RateLimitMiddleware
from runtime.guard.ratelimit.redis_backend import RedisBackend
from runtime.guard.ratelimit.rules import UNIT_SECONDS, RequestInfo, Rule, bucket_key, rules_from_bundle

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "LIMITED_PATHS",
    "ON_UNAVAILABLE",
    "UNIT_SECONDS",
    "Backend",
    "BackendUnavailable",
    "Charge",
    "Clock",
    "LimiterMetrics",
    "MemoryBackend",
    "Outcome",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisBackend",
    "RequestInfo",
    "Rule",
    "Verdict",
    "backend_for",
    "bucket_key",
    "rules_from_bundle",
]
