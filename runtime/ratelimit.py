"""Rate limits: exact sliding-window counters (memory or Redis) and a pure ASGI middleware.

Stage: runtime, after gateway keys, before the endpoints. Imports archc.bundle, runtime.auth,
runtime.errors, redis.asyncio, prometheus_client and the standard library; no starlette.

A rule admits a request when the cost already spent in the last ``window_s`` seconds plus this
request's cost stays within ``limit``: "L per minute" means at most L in any 60-second span,
whatever the number of gateway processes (the Redis backend keeps one log per bucket and updates
it with one Lua script, using the Redis server's clock, so every machine sees the same counters).
Rules come from archgw's ``ratelimits`` (prompt tokens per unit, per model and header selector)
and archc's ``gateway.request_limits`` (requests or tokens per unit, optionally per gateway key).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from archc.bundle import Bundle
from runtime.auth import STATE_KEY_NAME, ASGIApp, Message, Receive, Scope, Send, client_format_for_path, scope_state, send_error
from runtime.errors import PayloadTooLarge, ProviderUnavailable, RateLimited

LOG = logging.getLogger("archc.ratelimit")

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
LIMITED_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/messages")
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
ON_UNAVAILABLE = ("open", "closed")

Clock = Callable[[], float]


@dataclass(frozen=True)
class Rule:
    """One limit. ``kind`` is ``requests`` or ``tokens``; ``value == "*"`` (selector) or
    ``gateway_key == "*"`` give each distinct header value / key its own bucket."""

    kind: str
    limit: int
    window_s: float
    model: str | None = None
    header: str | None = None
    value: str | None = None
    gateway_key: str | None = None
    origin: str = ""  # where it came from, for logs: ``ratelimits[0]``, ``gateway.request_limits[1]``

    @property
    def rule_id(self) -> str:
        """Stable across reloads while the rule is unchanged, so counters survive a swap."""
        text = json.dumps([self.kind, self.limit, self.window_s, self.model, self.header, self.value, self.gateway_key])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RequestInfo:
    model: str | None
    headers: Mapping[str, str]
    gateway_key: str | None
    tokens: int


@dataclass(frozen=True)
class Outcome:
    """One bucket's answer. Times in seconds from now."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    outcome: Outcome | None = None  # the binding rule's outcome (None: no rule applied)
    rule: Rule | None = None
    backend_down: bool = False

    def headers(self) -> dict[str, str]:
        if self.outcome is None:
            return {}
        o = self.outcome
        out = {
            "x-ratelimit-limit": str(o.limit),
            "x-ratelimit-remaining": str(max(0, o.remaining)),
            "x-ratelimit-reset": str(max(0, math.ceil(o.reset_s))),
        }
        if not self.allowed:
            out["retry-after"] = str(max(1, math.ceil(o.retry_after_s)))
        return out


class BackendUnavailable(Exception):
    """The shared counter store could not be reached in time. ``fresh`` is False while the backend
    stays marked down after a failure (those are counted, not logged again)."""

    def __init__(self, message: str, *, fresh: bool = True) -> None:
        super().__init__(message)
        self.fresh = fresh


# -- rules -------------------------------------------------------------------------------------

def rules_from_bundle(bundle: Bundle) -> tuple[Rule, ...]:
    """archgw ``ratelimits`` (prompt tokens) plus ``gateway.request_limits``."""
    rules: list[Rule] = []
    for i, rl in enumerate(bundle.ratelimits):
        limit = rl.get("limit") or {}
        selector = rl.get("selector") or {}
        rules.append(
            Rule(
                kind="tokens",
                limit=int(limit.get("tokens", 0)),
                window_s=float(rl.get("window_s") or UNIT_SECONDS[str(limit.get("unit", "minute"))]),
                model=rl.get("model") or None,
                header=(str(selector["key"]).lower() if selector.get("key") else None),
                value=(str(selector["value"]) if selector.get("value") is not None else None),
                origin=f"ratelimits[{i}]",
            )
        )
    gateway = bundle.extensions.get("gateway") or {}
    for i, rl in enumerate(gateway.get("request_limits") or []):
        kind = "requests" if "requests" in rl else "tokens"
        selector = rl.get("selector") or {}
        rules.append(
            Rule(
                kind=kind,
                limit=int(rl[kind]),
                window_s=float(UNIT_SECONDS[str(rl.get("unit", "minute"))]),
                model=rl.get("model") or None,
                header=(str(selector["key"]).lower() if selector.get("key") else None),
                value=(str(selector["value"]) if selector.get("value") is not None else None),
                gateway_key=rl.get("gateway_key") or None,
                origin=f"gateway.request_limits[{i}]",
            )
        )
    return tuple(rules)


def _model_matches(rule_model: str, requested: str | None, bundle: Bundle | None) -> bool:
    if requested is None:
        return False
    if rule_model == requested:
        return True
    if bundle is None:
        return False
    a, b = bundle.resolve_model(rule_model), bundle.resolve_model(requested)
    return a is not None and b is not None and a.provider.name == b.provider.name


def bucket_key(rule: Rule, info: RequestInfo, bundle: Bundle | None = None) -> str | None:
    """The bucket this request charges under ``rule``, or None when the rule does not apply."""
    if rule.model is not None and not _model_matches(rule.model, info.model, bundle):
        return None
    parts = [rule.rule_id]
    if rule.header is not None:
        got = info.headers.get(rule.header)
        if got is None or (rule.value not in (None, "*") and got != rule.value):
            return None
        parts.append(hashlib.sha256(got.encode("utf-8", "surrogateescape")).hexdigest()[:16] if rule.value == "*" else "")
    if rule.gateway_key is not None:
        if info.gateway_key is None or (rule.gateway_key != "*" and info.gateway_key != rule.gateway_key):
            return None
        parts.append(info.gateway_key)
    return "archc:rl:" + ":".join(parts)


def estimate_tokens(body: Any) -> int:
    """Prompt tokens, estimated as characters / 4 over every string in the prompt (archgw counts
    prompt tokens too, before the call). At least 1."""
    if not isinstance(body, dict):
        return 1
    chars = 0
    stack: list[Any] = [body.get(k) for k in ("messages", "system", "tools", "prompt", "input")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return max(1, math.ceil(chars / 4))


# -- backends ----------------------------------------------------------------------------------

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

    async def acquire(self, charges: Sequence[tuple[str, int, float, int]]) -> list[Outcome]:
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

    async def acquire(self, charges: Sequence[tuple[str, int, float, int]]) -> list[Outcome]:
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


def backend_for(cfg: Mapping[str, Any], *, clock: Clock = time.monotonic) -> Any:
    """The backend ``gateway.ratelimit_backend`` names: Redis for ``redis://``/``rediss://``, else memory."""
    url = str(cfg.get("url") or "memory://")
    if url.startswith("memory://"):
        return MemoryBackend(clock)
    return RedisBackend(url, timeout_s=float(cfg.get("timeout_ms", 500)) / 1000.0, clock=clock)


# -- the limiter -------------------------------------------------------------------------------

class LimiterMetrics:
    """Decisions (allowed, limited, failed_open, failed_closed) and backend errors, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("archc_ratelimit_decisions", "Rate-limit decisions by result", ["result"], registry=registry)
        self.backend_errors = Counter("archc_ratelimit_backend_errors", "Rate-limit backend (Redis) failures", registry=registry)


class RateLimiter:
    """Rules + a backend. ``check`` never raises: backend failures follow ``on_unavailable``."""

    def __init__(self, rules: Sequence[Rule], backend: Any, *, on_unavailable: str = "open", bundle: Bundle | None = None,
                 metrics: LimiterMetrics | None = None) -> None:
        if on_unavailable not in ON_UNAVAILABLE:
            raise ValueError(f"on_unavailable must be one of {ON_UNAVAILABLE}, got {on_unavailable!r}")
        self.rules = tuple(rules)
        self.backend = backend
        self.on_unavailable = on_unavailable
        self.bundle = bundle
        self.metrics = metrics
        self.counts = {"allowed": 0, "limited": 0, "backend_errors": 0, "failed_open": 0, "failed_closed": 0}
        self.needs_tokens = any(r.kind == "tokens" for r in self.rules)

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, clock: Clock = time.monotonic, backend: Any = None,
                    metrics: LimiterMetrics | None = None) -> "RateLimiter | None":
        rules = rules_from_bundle(bundle)
        if not rules:
            return None
        cfg = (bundle.extensions.get("gateway") or {}).get("ratelimit_backend") or {}
        if backend is None:
            backend = backend_for(cfg, clock=clock)
        return cls(rules, backend, on_unavailable=cfg.get("on_unavailable", "open"), bundle=bundle, metrics=metrics)

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        if self.metrics is not None:
            if result == "backend_errors":
                self.metrics.backend_errors.inc()
            else:
                self.metrics.decisions.labels(result).inc()

    async def check(self, info: RequestInfo) -> Verdict:
        charges: list[tuple[str, int, float, int]] = []
        applied: list[Rule] = []
        for rule in self.rules:
            key = bucket_key(rule, info, self.bundle)
            if key is None:
                continue
            charges.append((key, rule.limit, rule.window_s, 1 if rule.kind == "requests" else max(1, info.tokens)))
            applied.append(rule)
        if not charges:
            return Verdict(True)
        try:
            outcomes = await self.backend.acquire(charges)
        except BackendUnavailable as exc:
            self._count("backend_errors")
            level = logging.WARNING if exc.fresh else logging.DEBUG  # one line per outage, not per request
            if self.on_unavailable == "open":
                self._count("failed_open")
                LOG.log(level, "rate-limit backend unavailable, failing open: %s", exc)
                return Verdict(True, backend_down=True)
            self._count("failed_closed")
            LOG.log(level, "rate-limit backend unavailable, failing closed: %s", exc)
            return Verdict(False, backend_down=True)
        denied = [(o, r) for o, r in zip(outcomes, applied) if not o.allowed]
        if denied:
            self._count("limited")
            outcome, rule = max(denied, key=lambda pair: pair[0].retry_after_s)
            return Verdict(False, outcome, rule)
        self._count("allowed")
        outcome, rule = min(zip(outcomes, applied), key=lambda pair: pair[0].remaining / max(1, pair[0].limit))
        return Verdict(True, outcome, rule)

    async def aclose(self) -> None:
        await self.backend.aclose()


# -- ASGI middleware ---------------------------------------------------------------------------

class RateLimitMiddleware:
    """Buffers LLM request bodies (up to ``max_body_bytes``), asks the limiter, answers 429 in the
    client's format or forwards with ``x-ratelimit-*`` headers added.

    ``get_limiter(scope)`` returns the current limiter (it changes on hot reload) or None (off).
    """

    def __init__(
        self,
        app: ASGIApp,
        get_limiter: Callable[[Scope], RateLimiter | None],
        *,
        max_body_bytes: int | Callable[[Scope], int] = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.get_limiter = get_limiter
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path", "").rstrip("/") not in LIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limiter = self.get_limiter(scope)
        if limiter is None:
            await self.app(scope, receive, send)
            return
        client_format = client_format_for_path(scope["path"])
        cap = self.max_body_bytes(scope) if callable(self.max_body_bytes) else self.max_body_bytes
        body = await _read_body(receive, cap)
        if body is None:
            await send_error(send, PayloadTooLarge(f"request body exceeds {cap} bytes"), client_format)
            return
        info = _request_info(scope, body, limiter.needs_tokens)
        verdict = await limiter.check(info)
        if not verdict.allowed:
            if verdict.backend_down:
                error = ProviderUnavailable("rate-limit backend unavailable; try again shortly", headers={"retry-after": "1"})
            else:
                rule = verdict.rule
                what = f"{rule.limit} {rule.kind} per {int(rule.window_s)}s" if rule else "limit"
                error = RateLimited(f"rate limit exceeded ({what})", headers=verdict.headers(), code="rate_limit_exceeded")
            await send_error(send, error, client_format)
            return
        extra = [(k.encode(), v.encode()) for k, v in verdict.headers().items()]
        await self.app(scope, _replay(body, receive), _with_headers(send, extra))


async def _read_body(receive: Receive, cap: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _request_info(scope: Scope, body: bytes, needs_tokens: bool) -> RequestInfo:
    headers: dict[str, str] = {}
    for k, v in scope.get("headers") or ():
        headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):
        parsed = None
    model = parsed.get("model") if isinstance(parsed, dict) and isinstance(parsed.get("model"), str) else None
    tokens = estimate_tokens(parsed) if needs_tokens else 1
    return RequestInfo(model, headers, scope_state(scope).get(STATE_KEY_NAME), tokens)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    if not extra:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = list(message.get("headers") or ()) + extra
        await send(message)

    return wrapped
