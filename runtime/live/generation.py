"""Bundle generations: everything derived from one bundle (its gateway state, gateway keys, rate
limiter, retry policy), made current by one reference swap; and the middleware that pins each
request to the generation current when it arrives.

Stage: live (under runtime.app, which composes them; runtime.live.watcher feeds ``Live.swap_to``).
Imports archc.bundle, runtime.http.asgi, runtime.guard.auth, runtime.guard.ratelimit, runtime.upstream.retry, runtime.state
and the standard library. A swap never changes the table under a request in flight; superseded
generations are closed after a grace period (their routers and Redis pools may still serve requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from archc.bundle import Bundle
from runtime.http.asgi import REQUEST, ASGIApp, Receive, RequestState, Scope, Send, app_state, request_state
from runtime.guard.auth import KeyStore
from runtime.guard.ratelimit import DEFAULT_MAX_BODY_BYTES, LimiterMetrics, RateLimiter, backend_for, rules_from_bundle
from runtime.upstream.retry import Cooldown, Resilience, RetryMetrics, RetryPolicy
from runtime.settings import Settings
from runtime.state import GatewayState

LOG = logging.getLogger("archc.reload")
Closer = Callable[[], Awaitable[None]]


@dataclass
class Generation:
    """Everything derived from one bundle. ``gateway`` is the app's GatewayState for it."""

    number: int
    bundle: Bundle
    gateway: GatewayState
    keys: KeyStore
    limiter: RateLimiter | None
    resilience: Resilience
    closers: list[Closer] = field(default_factory=list)
    closed: bool = False
    # No gateway key required and no rate limit: those layers would pass every request through untouched.
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        self.plain = not self.keys.required and self.limiter is None

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for close in self.closers:
            try:
                await close()
            except Exception:  # closing must not fail a reload or a shutdown; say so and go on
                LOG.exception("closing generation %d", self.number)


class ReloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter("archc_bundle_reloads", "Bundle reload attempts by result", ["result"], registry=registry)
        self.bundle_info = Gauge("archc_bundle_info", "The bundle being served (1; its digest is the label)", ["digest"],
                                 registry=registry)

    def serving(self, digest: str, was: str | None = None) -> None:
        if was is not None:
            self.bundle_info.remove(was)
        self.bundle_info.labels(digest).set(1)


class Live:
    """The current generation and how to make the next one.

    ``build_gateway(bundle)`` returns ``(gateway_state, closers)`` for a new bundle (the app's
    targets and router); ``Live`` adds gateway keys, the rate limiter and the retry policy.
    """

    def __init__(
        self,
        bundle: Bundle,
        gateway: GatewayState,
        *,
        build_gateway: Callable[[Bundle], Awaitable[tuple[GatewayState, list[Closer]]]],
        registry: CollectorRegistry,
        env: Mapping[str, str] | None = None,
        grace_s: float = 30.0,
        span: Callable[[str], Any] | None = None,
        adopt: Callable[[GatewayState], None] | None = None,
        expect_digest: str | None = None,
    ) -> None:
        self.build_gateway = build_gateway
        self.expect_digest = expect_digest  # deploy by digest: no reload to any other bundle
        self.adopt = adopt  # called with each generation's gateway state (tracing hooks its upstream)
        self.env = dict(os.environ if env is None else env)
        self.grace_s = grace_s
        self.span = span
        self.retry_metrics = RetryMetrics(registry)
        self.limiter_metrics = LimiterMetrics(registry)
        self.metrics = ReloadMetrics(registry)
        self._retiring: dict[asyncio.Task, Generation] = {}
        self._lock = asyncio.Lock()
        self.cooldown: Cooldown | None = None
        self._backend: Any = None  # rate-limit counters, shared by generations with the same backend config
        self._backend_config: tuple | None = None
        self.current, _ = self._generation(1, bundle, gateway, [])
        self.metrics.serving(bundle.digest)

    def _generation(self, number: int, bundle: Bundle, gateway: GatewayState, closers: list[Closer]) -> tuple[Generation, Closer | None]:
        """The generation for ``bundle``, and the close of a rate-limit backend it replaced (or None).

        Cooldowns and rate-limit counters outlive a reload while their settings stay the same
        (limits are keyed by rule content, so an unchanged rule keeps counting)."""
        gw = bundle.extensions.get("gateway") or {}
        policy = RetryPolicy.from_gateway(gw)
        keys = KeyStore.from_gateway(gw, self.env)  # may raise: before any shared state changes
        if self.adopt is not None:
            self.adopt(gateway)
        if self.cooldown is None or (self.cooldown.failures, self.cooldown.seconds) != (policy.cooldown_failures, policy.cooldown_s):
            self.cooldown = Cooldown(policy.cooldown_failures, policy.cooldown_s)
        replaced = None
        limiter = None
        if rules_from_bundle(bundle):
            cfg = gw.get("ratelimit_backend") or {}
            config = (str(cfg.get("url") or "memory://"), cfg.get("timeout_ms"))
            if self._backend is None or config != self._backend_config:
                replaced = self._backend.aclose if self._backend is not None else None
                self._backend, self._backend_config = backend_for(cfg), config
                LOG.info("rate-limit counters: %s", getattr(self._backend, "describe", lambda: "in this process")())
            limiter = RateLimiter.from_bundle(bundle, backend=self._backend, metrics=self.limiter_metrics)
        generation = Generation(number, bundle, gateway, keys, limiter,
                                Resilience(policy, self.cooldown, self.retry_metrics, span=self.span), list(closers))
        return generation, replaced

    async def swap_to(self, bundle: Bundle) -> bool:
        """Build the next generation and make it current; on any failure keep the current one."""
        async with self._lock:
            old = self.current
            if bundle.digest == old.bundle.digest:
                self.metrics.reloads.labels("unchanged").inc()
                return False
            if self.expect_digest is not None and bundle.digest != self.expect_digest:
                self.metrics.reloads.labels("rejected").inc()
                LOG.error("bundle %s rejected, still serving %s: this gateway serves only %s (--expect-digest)",
                          bundle.digest, old.bundle.digest, self.expect_digest)
                return False
            closers: list = []
            try:
                gateway, closers = await self.build_gateway(bundle)
                new, replaced = self._generation(old.number + 1, bundle, gateway, closers)
            except Exception as exc:  # a bad bundle must never take the gateway down
                for close in closers:  # what was built for the refused bundle
                    with contextlib.suppress(Exception):
                        await close()
                self.metrics.reloads.labels("rejected").inc()
                LOG.error("bundle %s rejected, still serving %s: %s: %s", bundle.digest, old.bundle.digest, type(exc).__name__, exc)
                return False
            if replaced is not None:
                old.closers.append(replaced)  # requests of the old generation may still use it
            self.current = new  # the swap: one reference assignment
            self.metrics.reloads.labels("swapped").inc()
            self.metrics.serving(bundle.digest, was=old.bundle.digest)
            LOG.info("now serving bundle %s (generation %d, was %s)", bundle.digest, new.number, old.bundle.digest)
            self._retire(old)
            return True

    def _retire(self, old: Generation) -> None:
        async def later() -> None:
            await asyncio.sleep(self.grace_s)
            await old.aclose()

        task = asyncio.get_running_loop().create_task(later())
        self._retiring[task] = old
        task.add_done_callback(lambda t: self._retiring.pop(t, None))

    async def aclose(self) -> None:
        """Close every generation built here (superseded ones at once, then the current one)."""
        for task, old in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await old.aclose()  # a no-op when its retirement had already closed it
        await self.current.aclose()
        if self._backend is not None:
            await self._backend.aclose()


def effective_settings(settings: Settings, bundle: Bundle) -> Settings:
    """``settings`` with the bundle's ``gateway.timeouts.connect_ms`` and ``gateway.max_body_bytes`` applied."""
    gateway = bundle.extensions.get("gateway") or {}
    changes: dict[str, Any] = {}
    connect_ms = (gateway.get("timeouts") or {}).get("connect_ms")
    if connect_ms:
        changes["connect_timeout_s"] = connect_ms / 1000.0
    if gateway.get("max_body_bytes"):
        changes["max_body_bytes"] = int(gateway["max_body_bytes"])
    return dataclasses.replace(settings, **changes) if changes else settings


# -- per-request snapshot ----------------------------------------------------------------------

class LiveStateMiddleware:
    """Outermost: pins this request to the current generation (its ``RequestState``, runtime/http/asgi.py).

    ``plain``: the app for a request whose generation is ``plain`` while tracing is off (the same
    stack without the layers that would only pass it through); by default ``app`` serves every request.
    """

    def __init__(self, app: ASGIApp, plain: ASGIApp | None = None) -> None:
        self.app = app
        self.plain = plain or app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            shared = app_state(scope)
            if shared is not None and shared.live is not None:
                gen = shared.live.current
                scope[REQUEST] = RequestState(gen.gateway, gen, shared.tracing)
                if gen.plain and shared.tracing is None:
                    await self.plain(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def current_keys(scope: Scope) -> KeyStore | None:
    gen = request_state(scope).generation
    return gen.keys if gen is not None else None


def current_limiter(scope: Scope) -> RateLimiter | None:
    gen = request_state(scope).generation
    return gen.limiter if gen is not None else None


def current_max_body(scope: Scope) -> int:
    gen = request_state(scope).generation
    if gen is None:
        return DEFAULT_MAX_BODY_BYTES
    configured = (gen.bundle.extensions.get("gateway") or {}).get("max_body_bytes")
    return int(configured or gen.gateway.settings.max_body_bytes or DEFAULT_MAX_BODY_BYTES)
