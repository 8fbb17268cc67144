"""Hot reload: per-bundle state as generations, swapped atomically; a watcher for the bundle file.

Stage: runtime, lifespan level (below runtime.app). Imports archc.bundle, runtime.auth,
runtime.ratelimit, runtime.retry, runtime.accesslog, runtime.tracing, starlette (middleware only)
and the standard library. ``Hardening`` is what the app's lifespan starts; ``middleware()`` its stack.
A generation with no gateway keys and no rate limits (and tracing off) skips those layers.

Each request takes a snapshot of the current generation when it arrives (``LiveStateMiddleware``
puts it in ``request.state``), so a swap never changes the table under a request in flight. The
watcher polls the file's (mtime, size, inode) and also reacts to SIGHUP; a new file is validated
with ``archc.bundle.load`` (digest checked) and the per-bundle parts are rebuilt before the swap;
any failure keeps the current generation and logs why. Superseded generations are closed after a
grace period (their routers and Redis pools may still serve requests in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter
from starlette.middleware import Middleware

from archc.bundle import Bundle, load
from runtime.accesslog import AccessLogMiddleware
from runtime.auth import ASGIApp, GatewayKeyMiddleware, KeyStore, Receive, Scope, Send, scope_state
from runtime.ratelimit import DEFAULT_MAX_BODY_BYTES, LimiterMetrics, RateLimiter, RateLimitMiddleware, backend_for, rules_from_bundle
from runtime.retry import Cooldown, Resilience, RetryMetrics, RetryPolicy
from runtime.tracing import STATE_TRACING, Tracing, TracingMiddleware, current_tracing

LOG = logging.getLogger("archc.reload")
STATE_LIVE = "live"
STATE_GENERATION = "generation"
STATE_GATEWAY = "gateway"


@dataclass
class Generation:
    """Everything derived from one bundle. ``gateway`` is the app's GatewayState for it."""

    number: int
    bundle: Bundle
    gateway: Any
    keys: KeyStore
    limiter: RateLimiter | None
    resilience: Resilience
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
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


class Live:
    """The current generation and how to make the next one.

    ``build_gateway(bundle)`` returns ``(gateway_state, closers)`` for a new bundle (the app's
    targets and router); ``Live`` adds gateway keys, the rate limiter and the retry policy.
    """

    def __init__(
        self,
        bundle: Bundle,
        gateway: Any,
        *,
        build_gateway: Callable[[Bundle], Awaitable[tuple[Any, list[Callable[[], Awaitable[None]]]]]],
        registry: CollectorRegistry,
        env: Mapping[str, str] | None = None,
        grace_s: float = 30.0,
        span: Callable[[str], Any] | None = None,
        adopt: Callable[[Any], None] | None = None,
    ) -> None:
        self.build_gateway = build_gateway
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

    def _generation(self, number: int, bundle: Bundle, gateway: Any, closers: list) -> tuple[Generation, Any]:
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


class BundleWatcher:
    """Polls ``path`` every ``interval_s`` and on SIGHUP; hands each new, valid bundle to ``on_bundle``."""

    def __init__(
        self,
        path: str | Path,
        on_bundle: Callable[[Bundle], Awaitable[bool]],
        *,
        loader: Callable[[Path], Bundle] = load,
        interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.on_bundle = on_bundle
        self.loader = loader
        self.interval_s = interval_s
        self._seen = self._fingerprint()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._signal_installed = False

    def _fingerprint(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def check(self, *, force: bool = False) -> str:
        """One look at the file: ``unchanged``, ``missing``, ``rejected``, ``same`` or ``swapped``."""
        seen = self._fingerprint()
        if seen is None:
            if self._seen is not None:
                LOG.error("bundle file %s is gone; still serving the current bundle", self.path)
            self._seen = None
            return "missing"
        if seen == self._seen and not force:
            return "unchanged"
        self._seen = seen
        try:
            bundle = await asyncio.to_thread(self.loader, self.path)
        except Exception as exc:  # BundleError, a config's CompileError, OSError: all mean "keep the current one"
            LOG.error("bundle file %s not loaded, still serving the current bundle: %s", self.path, exc)
            return "rejected"
        return "swapped" if await self.on_bundle(bundle) else "same"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Only the main thread may own signal handlers; elsewhere polling alone is enough.
            loop.add_signal_handler(signal.SIGHUP, self._wake.set)
            self._signal_installed = True
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            forced = self._wake.is_set()
            self._wake.clear()
            try:
                await self.check(force=forced)
            except Exception:  # the watcher must outlive any one bad reload
                LOG.exception("bundle reload failed; still serving the current bundle")

    async def aclose(self) -> None:
        if self._signal_installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- what the lifespan starts -------------------------------------------------------------------

class Hardening:
    """Live generations, the bundle watcher and tracing, for one app's lifespan.

    ``gateway`` is the first GatewayState; ``build_gateway(bundle)`` makes the next one on reload.
    ``watch`` is the file to reload from (None: no reload); ``loader`` reads it (a config loader
    from the CLI, or ``archc.bundle.load`` for bundle files).
    """

    def __init__(self, bundle: Bundle, gateway: Any, *, build_gateway: Callable[[Bundle], Awaitable[tuple[Any, list]]],
                 env: Mapping[str, str], watch: str | Path | None = None, loader: Callable[[Path], Bundle] | None = None,
                 interval_s: float = 1.0) -> None:
        self.tracing = Tracing.from_bundle(bundle, env)
        tracing = self.tracing
        self.live = Live(bundle, gateway, build_gateway=build_gateway, registry=gateway.metrics.registry, env=env,
                         span=tracing.attempt_span if tracing is not None else None,
                         adopt=tracing.install if tracing is not None else None)
        self.watcher = None
        if watch is not None:
            self.watcher = BundleWatcher(watch, self.live.swap_to, loader=loader or load, interval_s=interval_s)

    def start(self) -> dict[str, Any]:
        """Start watching; returns the entries for the lifespan state."""
        if self.watcher is not None:
            self.watcher.start()
        return {STATE_LIVE: self.live, STATE_TRACING: self.tracing}

    async def aclose(self) -> None:
        if self.watcher is not None:
            await self.watcher.aclose()
        await self.live.aclose()
        if self.tracing is not None:
            await self.tracing.aclose()


def effective_settings(settings: Any, bundle: Bundle) -> Any:
    """``settings`` with the bundle's ``gateway.timeouts.connect_ms`` and ``gateway.max_body_bytes`` applied."""
    gateway = bundle.extensions.get("gateway") or {}
    changes: dict[str, Any] = {}
    connect_ms = (gateway.get("timeouts") or {}).get("connect_ms")
    if connect_ms and hasattr(settings, "connect_timeout_s"):
        changes["connect_timeout_s"] = connect_ms / 1000.0
    if gateway.get("max_body_bytes") and hasattr(settings, "max_body_bytes"):
        changes["max_body_bytes"] = int(gateway["max_body_bytes"])
    return dataclasses.replace(settings, **changes) if changes else settings


# -- per-request snapshot ----------------------------------------------------------------------

class LiveStateMiddleware:
    """Outermost: pins this request to the current generation (``request.state.gateway`` etc.).

    ``plain``: the app for a request whose generation is ``plain`` while tracing is off (the same
    stack without the layers that would only pass it through); by default ``app`` serves every request.
    """

    def __init__(self, app: ASGIApp, plain: ASGIApp | None = None) -> None:
        self.app = app
        self.plain = plain or app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope_state(scope)
            live = state.get(STATE_LIVE)
            if live is not None:
                gen = live.current
                state[STATE_GENERATION] = gen
                state[STATE_GATEWAY] = gen.gateway
                if gen.plain and state.get(STATE_TRACING) is None:
                    await self.plain(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _generation(scope: Scope) -> Generation | None:
    return (scope.get("state") or {}).get(STATE_GENERATION)


def current_keys(scope: Scope) -> KeyStore | None:
    gen = _generation(scope)
    return gen.keys if gen is not None else None


def current_limiter(scope: Scope) -> RateLimiter | None:
    gen = _generation(scope)
    return gen.limiter if gen is not None else None


def current_max_body(scope: Scope) -> int:
    gen = _generation(scope)
    settings = getattr(getattr(gen, "gateway", None), "settings", None)
    configured = (gen.bundle.extensions.get("gateway") or {}).get("max_body_bytes") if gen is not None else None
    return int(configured or getattr(settings, "max_body_bytes", 0) or DEFAULT_MAX_BODY_BYTES)


def middleware(innermost: Callable[[ASGIApp], ASGIApp]) -> list[Middleware]:
    """The hardening stack, outermost first: snapshot, access log, tracing, gateway keys, rate limits, ``innermost``."""
    return [Middleware(_stack, innermost)]


def _stack(app: ASGIApp, innermost: Callable[[ASGIApp], ASGIApp]) -> ASGIApp:
    inner = innermost(app)
    limited = RateLimitMiddleware(inner, get_limiter=current_limiter, max_body_bytes=current_max_body)
    full = AccessLogMiddleware(TracingMiddleware(GatewayKeyMiddleware(limited, get_store=current_keys), get_tracing=current_tracing))
    return LiveStateMiddleware(full, plain=AccessLogMiddleware(inner))
