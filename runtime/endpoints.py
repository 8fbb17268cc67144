"""HTTP handlers: parse (client's wire module) -> resolve -> route -> adapt -> upstream -> answer.

Stage: endpoints (thin). Imports starlette, and the runtime stages below it; never runtime.app.
Every answer carries the decision in ``x-arch-*`` headers; every error is rendered in the
client's format (``{"error": ...}`` for OpenAI, ``{"type": "error", ...}`` for Anthropic).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from runtime import adapt, echo, retry
from runtime.errors import GatewayError, InvalidRequest, PayloadTooLarge, ProviderUnavailable, UpstreamTimeout, render
from runtime.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runtime.providers import Target
from runtime.resolve import Choice, choose, wants_router
from runtime.responses import SSEResponse
from runtime.sessions import SESSION_HEADER
from runtime.state import GatewayState
from runtime.wire import WireFormat

JSON = "application/json"
SSE = "text/event-stream"
# Headers from an Anthropic client that an Anthropic upstream needs to see (Claude Code's betas).
_FORWARD_ANTHROPIC = ("anthropic-beta",)


def _state(request: Request) -> GatewayState:
    return request.scope["state"]["gateway"]  # what request.state.gateway reads, without building a State


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON; 413 over ``limit`` bytes, 400 when it is not JSON."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {int(length)} bytes; this gateway accepts at most {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"request body is over {limit} bytes, the most this gateway accepts")
    except ClientDisconnect as exc:
        raise InvalidRequest("the client closed the connection before sending the whole body") from exc
    if not body:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise InvalidRequest("request body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise InvalidRequest("request body is nested too deeply") from exc


def decision_headers(state: GatewayState, choice: Choice) -> dict[str, str]:
    """The ``x-arch-*`` headers that tell the client who served it and why."""
    p = choice.provider
    headers = {
        "x-arch-route": choice.route or "none",
        "x-arch-why": choice.why,
        "x-arch-model": p.model,
        "x-arch-provider": p.provider,
        "x-arch-target": p.name,
        "x-arch-router-ms": f"{choice.router_ms:.2f}",
        "x-arch-bundle": state.bundle.digest,
    }
    if choice.fallback:
        headers["x-arch-fallback"] = choice.fallback
    if choice.cache_hit:
        headers["x-arch-router-cache"] = "hit"
    return headers


async def decide(state: GatewayState, body: dict[str, Any], client_format: WireFormat) -> Choice:
    """Resolve the requested model, ask the router when the semantics say so, and choose."""
    bundle = state.bundle
    requested = body.get("model") if isinstance(body.get("model"), str) else None
    resolution = bundle.resolve_model(requested)
    decision = None
    if wants_router(bundle, resolution):
        decision = await state.router.decide(adapt.openai_messages(body, client_format))
        state.metrics.decision(decision.route, decision.fallback, decision.cache_hit, decision.router_ms)
    return choose(bundle, requested, resolution, decision)


def remember_session(state: GatewayState, request: Request, body: dict[str, Any], choice: Choice) -> None:
    """The last decision per Claude Code session, for its status line; never any prompt text.
    Requests without tools (title generation and other side requests) are marked as such."""
    state.sessions.record(
        request.headers.get(SESSION_HEADER), route=choice.route, fallback=choice.fallback,
        provider=choice.provider.provider, model=choice.provider.model, router_ms=choice.router_ms,
        cache_hit=choice.cache_hit, router_ran=choice.router_ran, main=bool(body.get("tools")),
    )


def error_response(state: GatewayState | None, err: GatewayError, client_format: WireFormat, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(render(err, client_format), status_code=err.status, headers={**(headers or {}), **err.headers})


async def chat_completions(request: Request) -> Response:
    return await _serve(request, WireFormat.OPENAI_CHAT, "chat_completions")


async def messages(request: Request) -> Response:
    return await _serve(request, WireFormat.ANTHROPIC_MESSAGES, "messages")


async def _serve(request: Request, client_format: WireFormat, endpoint: str) -> Response:
    state = _state(request)
    started = time.perf_counter()
    headers: dict[str, str] = {"x-arch-bundle": state.bundle.digest}
    route, provider = "none", "none"
    try:
        body = adapt.VALIDATORS[client_format](await read_json(request, state.settings.max_body_bytes))
        choice = await decide(state, body, client_format)
        headers = decision_headers(state, choice)
        remember_session(state, request, body, choice)
        route, provider = choice.route or "none", choice.provider.name
        response = await _attempts(request, state, body, choice, client_format, endpoint, started)
        if not isinstance(response, StreamingResponse):
            state.metrics.request_done(endpoint, route, provider, response.status_code, time.perf_counter() - started)
        return response
    except GatewayError as err:
        state.metrics.errors.labels(endpoint, err.kind).inc()
        state.metrics.request_done(endpoint, route, provider, err.status, time.perf_counter() - started)
        return error_response(state, err, client_format, headers)
    except Exception:  # the outermost handler: a bug answers 500 in the client's format, never a traceback
        state.log.exception("internal error while serving %s", request.url.path)
        err = GatewayError("internal gateway error; the gateway log has the details")
        state.metrics.request_done(endpoint, route, provider, 500, time.perf_counter() - started)
        return error_response(state, err, client_format, headers)


async def _attempts(request: Request, state: GatewayState, body: dict[str, Any], choice: Choice, client_format: WireFormat,
                    endpoint: str, started: float) -> Response:
    """``_forward`` under the retry/fallback policy of the request's bundle generation (runtime/retry.py):
    each attempt may be served by a fallback provider; every attempt is listed in ``x-arch-attempts``."""

    async def attempt(name: str) -> Response:
        provider = choice.provider if name == choice.provider.name else state.bundle.provider(name)
        if provider is None:
            raise ProviderUnavailable(f"fallback {name!r} is not a provider in this bundle")
        this = choice if provider is choice.provider else dataclasses.replace(choice, provider=provider)
        target = state.targets[name]
        target.check_usable()
        return await _forward(request, state, body, this, target, client_format, decision_headers(state, this), endpoint, started)

    generation = getattr(request.state, "generation", None)
    if generation is None:  # an app without the hardening middleware
        return await attempt(choice.provider.name)
    response, attempts = await generation.resilience.run(choice.provider.name, attempt)
    response.headers[retry.ATTEMPTS_HEADER] = retry.attempts_header(attempts)
    total_ms = generation.resilience.policy.total_ms
    if total_ms and isinstance(response, StreamingResponse):
        late = UpstreamTimeout(f"the answer did not finish within timeouts.total_ms ({total_ms} ms)")
        response.body_iterator = retry.bounded_stream(response.body_iterator, started + total_ms / 1000.0,
                                                      lambda: adapt.ERROR_EVENTS[client_format](render(late, client_format)),
                                                      clock=time.perf_counter)
    return response


async def _forward(request: Request, state: GatewayState, body: dict[str, Any], choice: Choice, target: Target,
                   client_format: WireFormat, headers: dict[str, str], endpoint: str, started: float) -> Response:
    up_format = target.upstream_format
    keep_reasoning = bool(choice.provider.options.get("send_reasoning", False))
    up_body = adapt.request_for_upstream(body, client_format, up_format, choice.provider.model, keep_reasoning=keep_reasoning)
    stream = bool(body.get("stream"))
    extra = None
    if client_format is up_format is WireFormat.ANTHROPIC_MESSAGES:
        extra = {k: request.headers[k] for k in _FORWARD_ANTHROPIC if k in request.headers}
    if target.echo:
        if stream:
            source: Any = _replay(echo.stream(up_body, choice))
            return _streaming(state, source, body, client_format, up_format, choice, headers, endpoint, started)
        resp: Any = echo.response(up_body, choice)
    else:
        try:
            if stream:
                source = await state.upstream.open_stream(target, _dumps(up_body), extra)
                return _streaming(state, source, body, client_format, up_format, choice, headers, endpoint, started)
            resp, raw = await state.upstream.post(target, _dumps(up_body), extra)
        except GatewayError as err:
            state.metrics.upstream_errors.labels(target.name, err.kind).inc()
            raise
        if client_format is up_format and isinstance(resp, dict):
            # Same format: the upstream's bytes go back untouched (its field order, unknown fields).
            state.metrics.usage(target.name, *adapt.usage_of(resp, up_format))
            return Response(raw, media_type=JSON, headers=headers)
    state.metrics.usage(target.name, *adapt.usage_of(resp, up_format))
    out = adapt.response_for_client(resp, client_format, up_format, model=_client_model(choice))
    return Response(_dumps(out), media_type=JSON, headers=headers)


def _dumps(obj: Any) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (valid JSON escape, not encodable as UTF-8): escape it
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


class _replay:
    """In-memory chunks (the echo upstream) behind the same interface as upstream.UpstreamStream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        return None


def _client_model(choice: Choice) -> str:
    """The model name a translated answer carries: what the client asked for (headers say who served)."""
    return choice.requested or choice.provider.model


def _streaming(state: GatewayState, source: Any, body: dict[str, Any], client_format: WireFormat, up_format: WireFormat, choice: Choice,
               headers: dict[str, str], endpoint: str, started: float) -> StreamingResponse:
    converter = adapt.stream_adapter(client_format, up_format, model=_client_model(choice), body=body)

    async def body() -> AsyncIterator[bytes]:
        status = 200
        try:
            async for chunk in source:
                for out in converter.feed(chunk):
                    yield out
            for out in converter.finish():
                yield out
        except GatewayError as err:
            # Mid-stream: the status line is gone, so the error travels as an event, then we close.
            status = err.status
            state.metrics.upstream_errors.labels(choice.provider.name, err.kind).inc()
            yield adapt.ERROR_EVENTS[client_format](render(err, client_format))
        except Exception:
            status = 500
            state.log.exception("internal error while streaming from %s", choice.provider.name)
            yield adapt.ERROR_EVENTS[client_format](render(GatewayError("internal gateway error mid-stream"), client_format))
        finally:
            await source.aclose()
            state.metrics.request_done(endpoint, choice.route or "none", choice.provider.name, status, time.perf_counter() - started)

    return SSEResponse(body(), media_type=SSE, headers={**headers, "cache-control": "no-cache"})


# -- small endpoints -------------------------------------------------------------------------------


def _route_format(request: Request) -> WireFormat:
    if request.query_params.get("format") == "anthropic" or "anthropic-version" in request.headers:
        return WireFormat.ANTHROPIC_MESSAGES
    return WireFormat.OPENAI_CHAT


async def route(request: Request) -> Response:
    """POST /v1/route: the decision for a chat body (OpenAI, or Anthropic with ``?format=anthropic``
    or an ``anthropic-version`` header) without calling any upstream."""
    state = _state(request)
    client_format = _route_format(request)
    try:
        body = adapt.VALIDATORS[client_format](await read_json(request, state.settings.max_body_bytes))
        choice = await decide(state, body, client_format)
    except GatewayError as err:
        return error_response(state, err, client_format, {"x-arch-bundle": state.bundle.digest})
    target = state.targets[choice.provider.name]
    return JSONResponse({
        "route": choice.route,
        "model": choice.provider.name,
        "provider": choice.provider.provider,
        "upstream_model": choice.provider.model,
        "why": choice.why,
        "fallback": choice.fallback,
        "requested": choice.requested,
        "router_ran": choice.router_ran,
        "router_ms": round(choice.router_ms, 3),
        "cache_hit": choice.cache_hit,
        "confidence": choice.confidence,
        "echo": target.echo,
        "available": not (target.missing_key or target.unserved),
        "bundle": state.bundle.digest,
    }, headers=decision_headers(state, choice))


async def count_tokens(request: Request) -> Response:
    """POST /v1/messages/count_tokens: an estimate (about 4 characters per token); Claude Code may ask."""
    state = _state(request)
    try:
        body = await read_json(request, state.settings.max_body_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise InvalidRequest("messages: expected an array of messages")
    except GatewayError as err:
        return error_response(state, err, WireFormat.ANTHROPIC_MESSAGES)
    size = sum(len(json.dumps(body.get(k), ensure_ascii=False)) for k in ("system", "messages", "tools") if k in body)
    return JSONResponse({"input_tokens": max(1, size // 4)})


async def models(request: Request) -> Response:
    """GET /v1/models: aliases, then provider names, in a shape both the OpenAI and Anthropic SDKs read."""
    bundle = _state(request).bundle
    owners = {a.name: "archc-alias" for a in bundle.aliases} | {p.name: p.provider for p in bundle.providers}
    data = [{"id": name, "object": "model", "type": "model", "created": 0, "created_at": "1970-01-01T00:00:00Z",
             "owned_by": owner, "display_name": name} for name, owner in owners.items()]
    return JSONResponse({"object": "list", "data": data, "has_more": False,
                         "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})


async def session_status(request: Request) -> Response:
    """GET /v1/arch/sessions/{session_id}: the session's last routing decision (``archc statusline``)."""
    status = _state(request).sessions.get(request.path_params["session_id"])
    if status is None:
        err = GatewayError("no routing decision recorded for this session (yet)")
        err.status, err.kind, err.openai_type = 404, "not_found_error", "not_found_error"
        return error_response(None, err, WireFormat.OPENAI_CHAT)
    return JSONResponse(status.to_dict())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready once the lifespan has loaded the bundle and the router (it runs before serving)."""
    state = _state(request)
    return JSONResponse({"status": "ready", "bundle": state.bundle.digest, "router": type(state.router).__name__,
                         "router_reason": getattr(state.router, "reason", None),
                         "router_model": str(state.settings.model_dir) if state.settings.model_dir else None,
                         "providers": len(state.bundle.providers), "echo": list(state.targets.echoed)})


async def metrics(request: Request) -> Response:
    state = _state(request)
    return Response(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)
