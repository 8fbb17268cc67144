"""The Starlette app: routes, error handlers, and the lifespan that owns the gateway's state.

Stage: app (top of the runtime; nothing imports it but the entry points). The lifespan builds the
provider targets, the router and the upstream pool, and closes what it built.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from archc.bundle import Bundle, load
from runtime.http import connections
from runtime.http import openapi
from runtime.http import endpoints
from runtime.http import chat
from runtime.observe.accesslog import AccessLogMiddleware
from runtime.http.asgi import APP, AppState, ASGIApp, error_answer, format_for_path
from runtime.guard.auth import GatewayKeyMiddleware
from runtime.live.generation import Live, LiveStateMiddleware, current_keys, current_limiter, current_max_body, effective_settings
from runtime.guard.ratelimit import RateLimitMiddleware
from runtime.observe.tracing import Tracing, TracingMiddleware, current_tracing
from runtime.decide.affinity import SessionPolicy, Sessions, PinStore
from runtime.live.pins import SharedSessions
from runtime.live.costs import CostRefresher, SourceRefresher, cost_source
from runtime.live.latency import LatencyRefresher, latency_source
from runtime.live.watcher import BundleWatcher
from runtime.errors import HTTPLayerError, MethodNotAllowed, NotFound
from runtime.http.fastpath import HotPathMiddleware
from runtime.observe.metrics import Metrics
from runtime.upstream.targets import Targets, build_targets
from runtime.router.decision import NullRouter, RouterService
from runtime.router.prompt import ChatTemplateError
from runtime.router.service import build_remote_router, build_router
from runtime.settings import Settings
from runtime.http.stored import store_for
from runtime.state import GatewayState
from runtime.upstream.client import Connections, Upstream, build_pool

LOGGER = "archc.runtime"


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/messages", chat.messages, methods=["POST"]),
        Route("/v1/responses", chat.responses, methods=["POST"]),
        Route("/v1/responses/input_tokens", endpoints.responses_input_tokens, methods=["POST"]),
        Route("/v1/responses/{response_id}", endpoints.stored_response, methods=["GET", "DELETE"]),
        Route("/v1/responses/{response_id}/input_items", endpoints.stored_input_items, methods=["GET"]),
        Route("/v1/messages/count_tokens", endpoints.count_tokens, methods=["POST"]),
        Route("/v1/models", endpoints.models, methods=["GET"]),
        Route("/v1/route", endpoints.route, methods=["POST"]),
        *(Route(path, endpoints.plano_route, methods=["POST"]) for path in endpoints.PLANO_ROUTE_PATHS),
        Route("/v1/arch/sessions/{session_id}", endpoints.session_status, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods, answered as JSON in the format the path suggests."""
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    headers = dict(exc.headers or {})  # a 405's Allow
    err = (NotFound(message, headers=headers) if exc.status_code == 404 else MethodNotAllowed(message, headers=headers)
           if exc.status_code == 405 else HTTPLayerError(exc.status_code, message, headers=headers))
    return error_answer(err, format_for_path(request.url.path))  # type: ignore[return-value]  # an ASGI answer, as Starlette calls it


def remote_router(bundle: Bundle, settings: Settings, targets: Targets | None = None) -> RouterService | None:
    """The router on a server (``routing.llm_provider``) for ``bundle``, or None when its router is local:
    the provider's URL, key, proxy and trust, on a connection pool of its own (closed with the router).
    Also what `archc route` and `archc test` decide with."""
    if not (bundle.routes and bundle.router is not None and bundle.router.remote):
        return None
    targets = targets or build_targets(bundle, settings.env)
    target = targets[bundle.router.provider]  # type: ignore[index]
    if bundle.router.remote_api == "completions":  # the same server's raw-prompt endpoint
        target = dataclasses.replace(target, url=bundle.router_endpoint() or target.url)
    sender = Upstream(build_pool(effective_settings(settings, bundle)))

    async def send(body: bytes) -> Any:
        return await sender.post_json(target, body)

    return build_remote_router(bundle, send, where=target.url, close=sender.pool.aclose)


def _pins_for(bundle: Bundle, metrics: Metrics) -> PinStore | None:
    """Where the bundle's pinned sessions live: this process, or Redis shared by every replica."""
    policy = SessionPolicy.from_extensions(bundle.extensions)
    if policy is None:
        return None
    if policy.redis_url is not None:
        return SharedSessions(policy, policy.redis_url, on_error=metrics.session_store_errors.inc)
    return Sessions(policy)


def _cache_breakpoints(bundle: Bundle) -> int | None:
    """``prompt_caching.inject_cache_control``'s smallest prefix worth a breakpoint (None: not injected)."""
    spec = (bundle.extensions.get("sessions") or {}).get("inject_cache_control")
    return int(spec.get("min_prefix_tokens") or 1024) if isinstance(spec, dict) else None


def _start_sources(bundle: Bundle, state: GatewayState) -> list[SourceRefresher]:
    """Start reading the bundle's metrics sources into the pool ranker, off the request path: its cost
    source for ``prefer: cheapest`` pools and a routing budget, its latency source (Prometheus) for ``prefer: fastest``."""
    models = [p.name for p in bundle.providers]
    started: list[SourceRefresher] = []
    cost = cost_source(bundle.extensions)
    budget = isinstance(bundle.extensions.get("sessions"), dict) and bundle.extensions["sessions"].get("budget")
    if cost is not None and (budget or any(r.policy == "cheapest" for r in bundle.routes)):
        started.append(CostRefresher(cost, models, state.pools))
    latency = latency_source(bundle.extensions)
    if latency is not None and any(r.policy == "fastest" for r in bundle.routes):
        started.append(LatencyRefresher(latency, models, state.pools))
    for refresher in started:
        refresher.start()
    return started


def _build_router(bundle: Bundle, settings: Settings, log: logging.Logger, targets: Targets) -> RouterService:
    try:
        remote = remote_router(bundle, settings, targets)
    except ChatTemplateError as exc:  # a hand-made bundle: the compiler checks the template
        log.error("the remote router's chat template (routing.chat_template) cannot be used (%s); every request falls back", exc)
        return NullRouter("error")
    if remote is not None:
        return remote
    try:
        return build_router(bundle, model_dir=settings.model_dir)
    except Exception as exc:  # a broken model must not take the gateway down: fall back, loudly
        log.error("router model could not be loaded from %s (%s: %s); every request falls back", settings.model_dir,
                  type(exc).__name__, exc)
        return NullRouter("error")


def create_app(
    bundle: Bundle,
    *,
    pool: Connections | None = None,
    router: RouterService | None = None,
    settings: Settings | None = None,
    watch: Path | None = None,
    loader: Callable[[Path], Bundle] | None = None,
) -> Starlette:
    """The gateway for ``bundle``. An injected upstream ``pool`` (runtime.upstream.client.Connections) or
    ``router`` is used as given and not closed.
    ``watch``: a bundle (or, with ``loader``, config) file to hot-reload on change or SIGHUP (runtime/live/watcher.py feeds runtime/live/generation.py)."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        log = logging.getLogger(LOGGER)
        targets = build_targets(bundle, settings.env, echo_missing=settings.echo)
        for warning in targets.warnings:
            log.warning(warning)
        if targets.echoed:
            log.warning("echo mode: no key set for %s; the built-in echo upstream answers for them", ", ".join(targets.echoed))
        active_router = router if router is not None else _build_router(bundle, settings, log, targets)
        effective = effective_settings(settings, bundle)
        upstream_pool = pool if pool is not None else build_pool(effective)
        metrics = Metrics(connections.CLIENTS)
        state = GatewayState(bundle, effective, targets, active_router, Upstream(upstream_pool), metrics, log,
                             stored=store_for(bundle.extensions.get("gateway") or {}),  # kept across reloads
                             pins=_pins_for(bundle, metrics), cache_breakpoints=_cache_breakpoints(bundle))
        pins = [state.pins]  # the session store of the bundle being served (or None)
        _count_shared_errors(active_router, state.metrics)
        sources = _start_sources(bundle, state)  # the metrics sources' refreshers of the bundle being served

        async def rebuild(new: Bundle) -> tuple[GatewayState, list]:
            # Hot reload (runtime/live/generation.py): new targets and router; the pool, metrics and sessions are kept.
            new_targets = build_targets(new, settings.env, echo_missing=settings.echo)
            new_router = router if router is not None else await asyncio.to_thread(_build_router, new, settings, log, new_targets)
            closers = [] if router is not None else [new_router.aclose]
            for refresher in sources:  # the new bundle's sources replace the old ones' (their numbers kept until read)
                await refresher.aclose()
            sources[:] = _start_sources(new, state)
            _count_shared_errors(new_router, state.metrics)
            new_settings = effective_settings(settings, new)
            # A fresh sender: it caches each provider's URL and headers by name, and those may have changed.
            new_sender = Upstream(upstream_pool)
            kept = pins[0]
            if kept is None or SessionPolicy.from_extensions(new.extensions) != kept.policy:  # the same policy keeps its pins
                if kept is not None:
                    closers.append(kept.aclose)  # once the requests of the old generation are done
                pins[0] = _pins_for(new, state.metrics)
            return dataclasses.replace(state, bundle=new, settings=new_settings, targets=new_targets, router=new_router,
                                       upstream=new_sender, pins=pins[0], cache_breakpoints=_cache_breakpoints(new)), closers

        tracing = Tracing.from_bundle(bundle, settings.env)
        live = Live(bundle, state, build_gateway=rebuild, registry=state.metrics.registry, env=settings.env,
                    span=tracing.attempt_span if tracing is not None else None,
                    adopt=tracing.install if tracing is not None else None, expect_digest=settings.expect_digest)
        watcher = BundleWatcher(watch, live.swap_to, loader=loader or load) if watch is not None else None
        log.info("serving bundle %s: %d providers, %d aliases, %d routes; router: %s", bundle.digest, len(bundle.providers),
                 len(bundle.aliases), len(bundle.routes), _describe_router(active_router))
        if watcher is not None:
            watcher.start()
        try:
            yield {APP: AppState(state, live, tracing)}
        finally:
            if watcher is not None:
                await watcher.aclose()
            await live.aclose()
            for refresher in sources:
                await refresher.aclose()
            if tracing is not None:
                await tracing.aclose()
            await state.stored.aclose()
            if pins[0] is not None:
                await pins[0].aclose()
            if pool is None:
                await upstream_pool.aclose()
            if router is None:
                await active_router.aclose()

    return Starlette(routes=routes(), lifespan=lifespan, exception_handlers={HTTPException: _http_error},
                     middleware=[Middleware(layers)])


def layers(starlette: ASGIApp) -> ASGIApp:
    """The middleware, outermost first: pin the request to the current generation; the access log;
    tracing; gateway keys; rate limits; the two hot endpoints (runtime/http/fastpath.py); Starlette's
    exception layer and router for every other path. A generation with no gateway keys and no rate
    limits (and tracing off) takes a shorter stack: the access log, the hot endpoints, Starlette."""
    hot = HotPathMiddleware(starlette)
    limited = RateLimitMiddleware(hot, get_limiter=current_limiter, max_body_bytes=current_max_body)
    full = AccessLogMiddleware(TracingMiddleware(GatewayKeyMiddleware(limited, get_store=current_keys), get_tracing=current_tracing))
    return LiveStateMiddleware(full, plain=AccessLogMiddleware(hot))


def _count_shared_errors(router: RouterService, metrics: Metrics) -> None:
    """A shared decision cache (runtime/router/shared.py) counts its Redis failures in the gateway's metrics."""
    shared = getattr(router, "shared", None)
    if shared is not None:
        shared.on_error = metrics.shared_cache_errors.inc


def _describe_router(router: RouterService) -> str:
    reason = getattr(router, "reason", None)
    where = getattr(getattr(router, "inner", router), "where", None)  # a remote router, behind the decision cache
    if where:
        return f"remote, at {where}"
    return f"none ({reason}: requests use the requested or default model)" if reason else type(router).__name__
