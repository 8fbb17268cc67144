"""The rate limiter: rules plus a counter store give a Verdict; store failures follow ``on_unavailable``.

Stage: runtime rate limiting, below the middleware. Imports archc.bundle, prometheus_client, the
runtime.guard.ratelimit rules and stores, and the standard library.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter

from archc.bundle import Bundle
from runtime.guard.ratelimit.backend import Backend, BackendUnavailable, Charge, Clock, Outcome
from runtime.guard.ratelimit.memory import MemoryBackend
from runtime.guard.ratelimit.redis_backend import RedisBackend
from runtime.guard.ratelimit.rules import RequestInfo, Rule, bucket_key, rules_from_bundle

LOG = logging.getLogger("archc.ratelimit")

ON_UNAVAILABLE = ("open", "closed")


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer for one request; ``headers()`` are what the client sees (``x-ratelimit-*``,
    plus ``retry-after`` when denied)."""

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


def backend_for(cfg: Mapping[str, Any], *, clock: Clock = time.monotonic) -> MemoryBackend | RedisBackend:
    """The backend ``gateway.ratelimit_backend`` names: Redis for ``redis://``/``rediss://``, else memory."""
    url = str(cfg.get("url") or "memory://")
    if url.startswith("memory://"):
        return MemoryBackend(clock)
    return RedisBackend(url, timeout_s=float(cfg.get("timeout_ms", 500)) / 1000.0, clock=clock)


class LimiterMetrics:
    """Decisions (allowed, limited, failed_open, failed_closed) and backend errors, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("archc_ratelimit_decisions", "Rate-limit decisions by result", ["result"], registry=registry)
        self.backend_errors = Counter("archc_ratelimit_backend_errors", "Rate-limit backend (Redis) failures", registry=registry)


class RateLimiter:
    """Rules + a backend. ``check`` never raises: backend failures follow ``on_unavailable``."""

    def __init__(self, rules: Sequence[Rule], backend: Backend, *, on_unavailable: str = "open", bundle: Bundle | None = None,
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
    def from_bundle(cls, bundle: Bundle, *, clock: Clock = time.monotonic, backend: Backend | None = None,
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
        charges: list[Charge] = []
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
