"""The one decision pipeline: requested model -> resolve -> (router) -> choose -> Choice.

Stage: decide. Every hot endpoint (runtime/http/chat.py, ``/v1/route``) and the compiler's replays
(``archc test``, ``archc test --impact``, which get it from archc/cli) call ``decide``; nothing
else asks the router or applies the routing semantics. Imports archc.bundle, runtime.errors,
runtime.decide.choose and the router's types (runtime/router/decision.py); no model library.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping, MutableMapping, Sequence

from archc.bundle import Bundle, Route
from runtime.decide.affinity import Pin, PinStore, last_is_user
from runtime.decide.budget import RETAINED, Switch
from runtime.decide.choose import WHY_AFFINITY, Choice, choose, wants_router
from runtime.router.decision import RouterService

Messages = Sequence[Mapping[str, Any]]


async def decide(bundle: Bundle, router: RouterService, requested: str | None, messages: Callable[[], Messages],
                 *, memo: MutableMapping[tuple, Any] | None = None,
                 rank: Callable[[Route], tuple[str, ...]] | None = None,
                 sessions: PinStore | None = None, session: Callable[[Messages], str | None] | None = None,
                 gate: Callable[[Pin, str], tuple[Switch, Pin]] | None = None) -> Choice:
    """The Choice for one request; raises UnknownModel (with the router's decision) when nothing serves it.

    ``messages`` gives the conversation in OpenAI chat shape; it is called only when the router is
    asked (a request that needs no router pays for no conversion). ``memo``, when given, remembers
    router-free choices: a known model that needs no router gets the same choice on every request
    of the bundle (keyed by its digest, so a memo never outlives its bundle's meaning). ``sessions``
    (runtime/decide/affinity.py) and ``session`` (the conversation's name, from its messages): a
    routed request of a pinned session may be served by its pinned model without the router.
    ``gate`` (a routing budget: runtime/decide/budget.py's ``gate`` with the prices and the
    request's own share bound in): a pinned session's turn is routed, and a pick that leaves its
    model is served only when the gate allows it."""
    key = ("choice", bundle.digest, requested)
    if memo is not None:
        known = memo.get(key)
        if known is not None:
            return known
    resolution = bundle.resolve_model(requested)
    if sessions is not None and wants_router(bundle, resolution):
        return await _decide_in_session(bundle, router, requested, resolution, messages(), rank, sessions, session, gate)
    decision = await router.decide(messages()) if wants_router(bundle, resolution) else None
    choice = choose(bundle, requested, resolution, decision, rank)
    if memo is not None and decision is None and resolution is not None:  # only names the bundle knows: it stays small
        memo[key] = choice
    return choice


async def _decide_in_session(bundle: Bundle, router: RouterService, requested: str | None, resolution: Any,
                             conversation: Messages, rank: Callable[[Route], tuple[str, ...]] | None,
                             sessions: PinStore, session: Callable[[Messages], str | None] | None,
                             gate: Callable[[Pin, str], tuple[Switch, Pin]] | None) -> Choice:
    """A routed request when sessions are kept: the pinned model (affinity on, or a non-user tail with
    route_on_user_only) answers without the router; otherwise the router decides and the session is
    pinned. With a budget ``gate``, a pinned session's user turn is routed and the gate decides
    whether the pick may leave the pinned model (retained: the pinned model serves, as affinity)."""
    name = session(conversation) if session is not None else None
    pin = await sessions.get(name) if name is not None else None
    if pin is not None and (bundle.provider(pin.provider) is None or (pin.route is not None and bundle.route(pin.route) is None)):
        pin = None  # a model or route the bundle no longer has: decided afresh
    replay = pin is not None and sessions.policy.route_on_user_only and not last_is_user(conversation)
    if pin is not None and (replay or (sessions.policy.affinity and gate is None)):
        return Choice(bundle.provider(pin.provider), WHY_AFFINITY, requested, route=pin.route)  # type: ignore[arg-type]
    decision = await router.decide(conversation)
    choice = choose(bundle, requested, resolution, decision, rank)
    kept = Pin(choice.provider.name, choice.route)
    if pin is not None and gate is not None:
        switch, kept = gate(pin, choice.provider.name)
        if switch.decision == RETAINED:
            choice = Choice(bundle.provider(pin.provider), WHY_AFFINITY, requested, route=pin.route,  # type: ignore[arg-type]
                            decision=decision, switch=switch)
        else:
            choice = replace(choice, switch=switch)
        kept = replace(kept, provider=choice.provider.name, route=choice.route)
    if name is not None:
        await sessions.pin(name, kept)
    return choice
