"""The decision step every hot endpoint takes: resolve the model (aliases, literals, the router),
count it, name it in ``x-arch-*`` headers, remember it for the client's session.

Stage: http (above runtime.decide: this adds the gateway's state, metrics and sessions to the pure
decision). Used by runtime/http/chat.py (chat, messages, responses) and ``/v1/route``.
"""

from __future__ import annotations

from typing import Any

from runtime.decide.affinity import Pin, scoped, session_key
from runtime.decide.budget import Switch, gate, parse_pct
from runtime.decide.choose import Choice
from runtime.decide.decide import decide
from runtime.errors import InvalidRequest, UnknownModel
from runtime.router.decision import Decision
from runtime.state import GatewayState
from runtime.wire import WireFormat, adapt
from runtime.wire.tokens import prompt_tokens


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
    if choice.switch is not None:  # a routing budget's verdict: allowed or retained, why, and its numbers
        headers["x-arch-switch"] = choice.switch.header()
    if choice.pool:  # the route's model pool in the order it was tried (its policy's ranking)
        route = state.bundle.route(choice.route or "")
        policy = route.policy if route is not None else "none"
        headers["x-arch-pool"] = " > ".join(choice.pool) + (f" (prefer {policy})" if policy != "none" else "")
    return headers


SPEND_HEADERS = ("x-arch-max-switch-spend-pct", "x-plano-max-switch-spend-pct")  # a request's own routing budget share


async def decide_request(state: GatewayState, body: dict[str, Any], client_format: WireFormat,
                         affinity: str | None = None, tenant: str | None = None, spend_pct: str | None = None) -> Choice:
    """``runtime.decide.decide`` for a validated request body, counted in the router metrics.
    ``affinity``: the client's ``X-Model-Affinity`` (the session's name; else it is derived);
    ``tenant``: the value of the session policy's ``tenant_header`` (sessions are named within it);
    ``spend_pct``: the request's ``x-arch-max-switch-spend-pct`` (a routing budget's share for this
    turn; a value that is not a number from 0 to 100 is a 400)."""
    requested = body.get("model") if isinstance(body.get("model"), str) else None

    def session(conversation: Any) -> str | None:
        name = f"h-{affinity[:200]}" if affinity else session_key(conversation, body.get("tools"))
        return scoped(name, tenant) if name is not None else None

    budget = state.pins.policy.budget if state.pins is not None else None
    pct = None
    if spend_pct is not None and budget is not None:
        pct = parse_pct(spend_pct)
        if pct is None:
            raise InvalidRequest(f"x-arch-max-switch-spend-pct: expected a number from 0 to 100, got {spend_pct[:40]!r}",
                                 code="invalid_header")

    def switch_gate(pin: Pin, candidate: str) -> tuple[Switch, Pin]:
        verdict, kept = gate(pin, candidate, prompt_tokens(body), state.pools.rates, budget, pct)
        state.metrics.switch_decisions.labels(verdict.decision, verdict.reason).inc()
        return verdict, kept

    try:
        choice = await decide(state.bundle, state.router, requested, lambda: adapt.openai_messages(body, client_format),
                              memo=state.memo, rank=state.pools.rank, sessions=state.pins,
                              session=session if state.pins is not None else None,
                              gate=switch_gate if budget is not None else None)
    except UnknownModel as err:
        _count(state, err.decision)
        raise
    _count(state, choice.decision)
    return choice


def spend_pct_of(headers: Any) -> str | None:
    """The request's own routing budget share from its headers (a mapping): archc's header, else Plano's."""
    return next((headers[name] for name in SPEND_HEADERS if name in headers), None)


def tenant_of(state: GatewayState, headers: Any) -> str | None:
    """The request's tenant for its session name: the value of the session policy's ``tenant_header``
    (``headers``: raw ASGI pairs or a mapping), None without one."""
    name = state.pins.policy.tenant_header if state.pins is not None else None
    if name is None:
        return None
    if isinstance(headers, list):
        wanted = name.encode("latin-1")
        return next((value.decode("latin-1") for key, value in headers if key == wanted), None)
    return headers.get(name)


def _count(state: GatewayState, decision: Decision | None) -> None:
    if decision is not None:
        state.metrics.decision(decision.route, decision.fallback, decision.cache_hit, decision.router_ms)


def remember_session(state: GatewayState, session_id: str | None, body: dict[str, Any], choice: Choice) -> None:
    """The last decision per Claude Code session, for its status line; never any prompt text.
    Requests without tools (title generation and other side requests) are marked as such."""
    state.sessions.record(
        session_id, route=choice.route, fallback=choice.fallback,
        provider=choice.provider.provider, model=choice.provider.model, router_ms=choice.router_ms,
        cache_hit=choice.cache_hit, router_ran=choice.router_ran, main=bool(body.get("tools")),
    )
