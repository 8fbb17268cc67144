"""The Starlette app: routes, error handlers, and the lifespan that owns the gateway's state.

Stage: app (top of the runtime; nothing imports it but the entry points). The lifespan builds the
provider targets, the router and the upstream client, and closes what it built.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archc.bundle import Bundle
from runtime import chat, connections, endpoints, openapi, reload
from runtime.errors import InvalidRequest, MethodNotAllowed, NotFound, format_for_path, render
from runtime.fastpath import HotPathMiddleware
from runtime.metrics import Metrics
from runtime.providers import build_targets
from runtime.router.decision import NullRouter, RouterService
from runtime.router.service import build_router
from runtime.settings import Settings
from runtime.state import GatewayState
from runtime.upstream import Upstream, build_client

LOGGER = "archc.runtime"


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/messages", chat.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", endpoints.count_tokens, methods=["POST"]),
        Route("/v1/models", endpoints.models, methods=["GET"]),
        Route("/v1/route", endpoints.route, methods=["POST"]),
        Route("/v1/arch/sessions/{session_id}", endpoints.session_status, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods, answered as JSON in the format the path suggests."""
    assert isinstance(exc, HTTPException)
    fmt = format_for_path(request.url.path)
    kind = NotFound if exc.status_code == 404 else MethodNotAllowed if exc.status_code == 405 else InvalidRequest
    err = kind(f"{request.method} {request.url.path}: {exc.detail}")
    return JSONResponse(render(err, fmt), status_code=exc.status_code, headers=dict(exc.headers or {}))


def _build_router(bundle: Bundle, settings: Settings, log: logging.Logger) -> RouterService:
    try:
        return build_router(bundle, model_dir=settings.model_dir)
    except Exception as exc:  # a broken model must not take the gateway down: fall back, loudly
        log.error("router model could not be loaded from %s (%s: %s); every request falls back", settings.model_dir,
                  type(exc).__name__, exc)
        return NullRouter("error")


def create_app(
    bundle: Bundle,
    *,
    http_client: httpx.AsyncClient | None = None,
    router: RouterService | None = None,
    settings: Settings | None = None,
    watch: Path | None = None,
    loader: Callable[[Path], Bundle] | None = None,
) -> Starlette:
    """The gateway for ``bundle``. Injected ``http_client``/``router`` are used as given and not closed.
    ``watch``: a bundle (or, with ``loader``, config) file to hot-reload on change or SIGHUP (runtime/reload.py)."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        log = logging.getLogger(LOGGER)
        targets = build_targets(bundle, settings.env, echo_missing=settings.echo)
        for warning in targets.warnings:
            log.warning(warning)
        if targets.echoed:
            log.warning("echo mode: no key set for %s; the built-in echo upstream answers for them", ", ".join(targets.echoed))
        active_router = router if router is not None else _build_router(bundle, settings, log)
        client = http_client if http_client is not None else build_client(reload.effective_settings(settings, bundle))
        effective = reload.effective_settings(settings, bundle)
        sender = Upstream(client, connect_timeout_s=effective.connect_timeout_s, read_timeout_s=effective.read_timeout_s,
                          native=effective.upstream_transport == "h1")
        state = GatewayState(bundle, effective, targets, active_router, client, sender, Metrics(connections.CLIENTS), log)

        async def rebuild(new: Bundle) -> tuple[GatewayState, list]:
            # Hot reload (runtime/reload.py): new targets and router; client, metrics and sessions are kept.
            new_targets = build_targets(new, settings.env, echo_missing=settings.echo)
            new_router = router if router is not None else await asyncio.to_thread(_build_router, new, settings, log)
            closers = [] if router is not None else [new_router.aclose]
            new_settings = reload.effective_settings(settings, new)
            # A fresh sender: it caches each provider's URL and headers by name, and those may have changed.
            new_sender = Upstream(client, connect_timeout_s=new_settings.connect_timeout_s, read_timeout_s=new_settings.read_timeout_s,
                                  native=new_settings.upstream_transport == "h1")
            return dataclasses.replace(state, bundle=new, settings=new_settings, targets=new_targets, router=new_router,
                                       upstream=new_sender), closers

        hardening = reload.Hardening(bundle, state, build_gateway=rebuild, env=settings.env, watch=watch, loader=loader)
        log.info("serving bundle %s: %d providers, %d aliases, %d routes; router: %s", bundle.digest, len(bundle.providers),
                 len(bundle.aliases), len(bundle.routes), _describe_router(active_router))
        try:
            yield {"gateway": state, **hardening.start()}
        finally:
            await hardening.aclose()
            if http_client is None:
                await client.aclose()
            if router is None:
                await active_router.aclose()

    return Starlette(routes=routes(), lifespan=lifespan, exception_handlers={HTTPException: _http_error},
                     middleware=reload.middleware(HotPathMiddleware))


def _describe_router(router: RouterService) -> str:
    reason = getattr(router, "reason", None)
    return f"none ({reason}: requests use the requested or default model)" if reason else type(router).__name__
