"""HTTP handlers and the steps the hot ones share: read JSON (runtime/http/body.py) -> decide -> decision headers.

Stage: endpoints (thin). Imports starlette, and the runtime stages below it; never runtime.app.
The hot chat endpoints are runtime/http/chat.py. Every answer carries the decision in ``x-arch-*``
headers; every error is rendered in the client's format (``{"error": ...}`` for OpenAI,
``{"type": "error", ...}`` for Anthropic).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.wire import adapt
from runtime.http.asgi import error_answer, request_state
from runtime.http import stored
from runtime.http.body import read_json
from runtime.http.decision import decide_request, decision_headers, spend_pct_of, tenant_of
from runtime.decide.choose import WHY_AFFINITY
from runtime.errors import GatewayError, InvalidRequest, NotFound
from runtime.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runtime.state import GatewayState
from runtime.wire import WireFormat, anthropic_messages
from runtime.wire.tokens import prompt_tokens


def _state(request: Request) -> GatewayState:
    return request_state(request.scope).gateway


def _bundle_header(state: GatewayState) -> list[tuple[bytes, bytes]]:
    return [(b"x-arch-bundle", state.bundle.digest.encode("latin-1"))]


# -- small endpoints -------------------------------------------------------------------------------


_ROUTE_FORMATS = {"openai": WireFormat.OPENAI_CHAT, "anthropic": WireFormat.ANTHROPIC_MESSAGES,
                  "responses": WireFormat.OPENAI_RESPONSES}


def _route_format(request: Request) -> WireFormat:
    """``?format=`` names the body's format; without it an ``anthropic-version`` header means Anthropic.
    An unknown value is refused (an OpenAI-format 400): a typo must not silently mean OpenAI."""
    wanted = request.query_params.get("format")
    if wanted is not None:
        if wanted not in _ROUTE_FORMATS:
            raise InvalidRequest(f"format: expected 'openai', 'anthropic' or 'responses', got {wanted[:40]!r}", code="invalid_request")
        return _ROUTE_FORMATS[wanted]
    if "anthropic-version" in request.headers:
        return WireFormat.ANTHROPIC_MESSAGES
    return WireFormat.OPENAI_CHAT


def _route_body(body: object, client_format: WireFormat) -> dict[str, Any]:
    """The body checked as its endpoint would, except that a decision needs no ``max_tokens``."""
    if client_format is WireFormat.ANTHROPIC_MESSAGES:
        return anthropic_messages.validate_request(body, require_max_tokens=False)
    return adapt.VALIDATORS[client_format](body)


async def route(request: Request) -> Response:
    """POST /v1/route: the decision for a request body (OpenAI chat; Anthropic with ``?format=anthropic``
    or an ``anthropic-version`` header; Responses with ``?format=responses``) without calling any upstream."""
    state = _state(request)
    try:
        client_format = _route_format(request)
    except GatewayError as err:
        return error_answer(err, WireFormat.OPENAI_CHAT, _bundle_header(state))
    try:
        body = await read_json(request.receive, request.headers.get("content-length"), state.settings.max_body_bytes)
        body = _route_body(body, client_format)
        if client_format is WireFormat.OPENAI_RESPONSES:  # the stored turns a follow-up names are part of it
            body = await stored.expand(state.stored, body)
        choice = await decide_request(state, body, client_format, request.headers.get("x-model-affinity"),
                                     tenant_of(state, request.headers), spend_pct_of(request.headers))
    except GatewayError as err:
        return error_answer(err, client_format, _bundle_header(state))
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


_PLANO_FORMATS = {"/routing/v1/chat/completions": WireFormat.OPENAI_CHAT, "/routing/v1/messages": WireFormat.ANTHROPIC_MESSAGES,
                  "/routing/v1/responses": WireFormat.OPENAI_RESPONSES}
PLANO_ROUTE_PATHS = tuple(_PLANO_FORMATS)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


async def plano_route(request: Request) -> Response:
    """POST /routing/v1/{chat/completions,messages,responses}: the decision alone, in Plano 0.4's
    shape: ``models`` (the ranked list to try: the route's pool in its policy's order, or the served
    model and its configured fallbacks), ``route`` (null when none matched), ``trace_id`` (the
    client's ``traceparent``'s, else a new one), ``session_id`` (the client's ``X-Model-Affinity``),
    ``pinned`` (the session's pinned model answered, without the router: sessions kept by
    ``prompt_caching`` / ``route_on_user_only``) and ``switched`` (a routing budget let the session's
    turn leave its model: runtime/decide/budget.py). The body is
    the endpoint's own request format; Plano's per-request ``routing_preferences`` are not applied
    (named in ``x-arch-ignored``). Errors answer in that format."""
    state = _state(request)
    client_format = _PLANO_FORMATS[request.url.path]
    try:
        body = await read_json(request.receive, request.headers.get("content-length"), state.settings.max_body_bytes)
        ignored = isinstance(body, dict) and "routing_preferences" in body
        if ignored:
            body = {k: v for k, v in body.items() if k != "routing_preferences"}
        body = _route_body(body, client_format)
        if client_format is WireFormat.OPENAI_RESPONSES:
            body = await stored.expand(state.stored, body)
        choice = await decide_request(state, body, client_format, request.headers.get("x-model-affinity"),
                                     tenant_of(state, request.headers), spend_pct_of(request.headers))
    except GatewayError as err:
        return error_answer(err, client_format, _bundle_header(state))
    models = list(choice.pool)
    if not models:
        generation = request_state(request.scope).generation
        models = list(generation.resilience.policy.chain(choice.provider.name)) if generation is not None else [choice.provider.name]
    traced = _TRACEPARENT.match(request.headers.get("traceparent", ""))
    answer: dict[str, Any] = {"models": models, "route": choice.route, "trace_id": traced.group(1) if traced else secrets.token_hex(16)}
    if request.headers.get("x-model-affinity"):
        answer["session_id"] = request.headers["x-model-affinity"]
    answer.update(pinned=choice.why == WHY_AFFINITY, switched=choice.switch is not None and choice.switch.switched)
    headers = decision_headers(state, choice)
    if ignored:
        headers["x-arch-ignored"] = "routing_preferences (per-request routing policies are not applied; the bundle's routes are)"
    return JSONResponse(answer, headers=headers)


async def count_tokens(request: Request) -> Response:
    """POST /v1/messages/count_tokens: an estimate (runtime.wire.tokens: about 4 characters per
    token, the same rule as token rate limits); Claude Code may ask."""
    state = _state(request)
    try:
        body = await read_json(request.receive, request.headers.get("content-length"), state.settings.max_body_bytes)
        body = anthropic_messages.validate_request(body, require_max_tokens=False)  # the body /v1/messages would take
    except GatewayError as err:
        return error_answer(err, WireFormat.ANTHROPIC_MESSAGES, _bundle_header(state))
    return JSONResponse({"input_tokens": prompt_tokens(body)})


async def responses_input_tokens(request: Request) -> Response:
    """POST /v1/responses/input_tokens: the same estimate for a Responses body, its stored history
    (``previous_response_id``) included, in the shape OpenAI's endpoint answers."""
    state = _state(request)
    try:
        body = await read_json(request.receive, request.headers.get("content-length"), state.settings.max_body_bytes)
        body = await stored.expand(state.stored, adapt.VALIDATORS[WireFormat.OPENAI_RESPONSES](body))
    except GatewayError as err:
        return error_answer(err, WireFormat.OPENAI_RESPONSES, _bundle_header(state))
    return JSONResponse({"object": "response.input_tokens", "input_tokens": prompt_tokens(body)})


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
        return error_answer(NotFound("no routing decision recorded for this session (yet)"), WireFormat.OPENAI_CHAT)
    return JSONResponse(status.to_dict())


async def stored_response(request: Request) -> Response:
    """GET /v1/responses/{id}: a stored Responses answer; DELETE forgets it (404 when unknown)."""
    store, rid = _state(request).stored, request.path_params["response_id"]
    try:
        return JSONResponse(await (store.delete(rid) if request.method == "DELETE" else store.get(rid)))
    except GatewayError as err:
        return error_answer(err, WireFormat.OPENAI_RESPONSES)


_MAX_LISTED = 100


async def stored_input_items(request: Request) -> Response:
    """GET /v1/responses/{id}/input_items: the items a stored response was generated from, as OpenAI
    lists them: ``limit`` (1-100, default 20), ``order`` (``desc``, the default, or ``asc``), ``after``
    (an item id: the page after it); 404 when the response is unknown, 400 for a bad parameter."""
    store, rid, query = _state(request).stored, request.path_params["response_id"], request.query_params
    try:
        limit_text, order = query.get("limit", "20"), query.get("order", "desc")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_LISTED:
            raise InvalidRequest(f"limit: expected an integer from 1 to {_MAX_LISTED}, got {limit_text[:40]!r}")
        if order not in ("asc", "desc"):
            raise InvalidRequest(f"order: expected 'asc' or 'desc', got {order[:40]!r}")
        items = await stored.input_items(store, rid)
        if order == "desc":
            items.reverse()
        after = query.get("after")
        if after is not None:
            at = next((i for i, item in enumerate(items) if item["id"] == after), None)
            if at is None:
                raise InvalidRequest(f"after: no input item with id {after[:80]!r} in response {rid!r}")
            items = items[at + 1:]
        page = items[: int(limit_text)]
    except GatewayError as err:
        return error_answer(err, WireFormat.OPENAI_RESPONSES)
    return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready once the lifespan has loaded the bundle and the router (it runs before serving)."""
    state = _state(request)
    return JSONResponse({"status": "ready", "bundle": state.bundle.digest, "router": type(state.router).__name__,
                         "router_reason": getattr(state.router, "reason", None),
                         "router_model": str(state.settings.model_dir) if state.settings.model_dir else None,
                         **_router_backend(state),
                         "providers": len(state.bundle.providers), "echo": list(state.targets.echoed)})


def _router_backend(state: GatewayState) -> dict[str, Any]:
    """Who decides: ``remote`` (the router's server, at its URL), ``local`` (the in-process model) or ``none``."""
    router = state.bundle.router
    if router is not None and router.remote and state.bundle.routes:
        return {"router_backend": "remote", "router_at": state.bundle.router_endpoint()}
    return {"router_backend": "none" if getattr(state.router, "reason", None) else "local", "router_at": None}


async def metrics(request: Request) -> Response:
    state = _state(request)
    return Response(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)
