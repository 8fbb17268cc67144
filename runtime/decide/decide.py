"""The one decision pipeline: requested model -> resolve -> (router) -> choose -> Choice.

Stage: decide. Every hot endpoint (runtime/http/chat.py, ``/v1/route``) and the compiler's replays
(``archc test``, ``archc test --impact``, which get it from archc/cli) call ``decide``; nothing
else asks the router or applies the routing semantics. Imports archc.bundle, runtime.errors,
runtime.decide.choose and the router's types (runtime/router/decision.py); no model library.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, MutableMapping, Sequence

from archc.bundle import Bundle, Route
from runtime.decide.affinity import Pin, PinStore, last_is_user
from runtime.decide.choose import WHY_AFFINITY, Choice, choose, wants_router
from runtime.router.decision import RouterService

Messages = Sequence[Mapping[str, Any]]


async def decide(bundle: Bundle, router: RouterService, requested: str | None, messages: Callable[[], Messages],
                 *, memo: MutableMapping[tuple, Any] | None = None,
                 rank: Callable[[Route], tuple[str, ...]] | None = None,
                 sessions: PinStore | None = None, session: Callable[[Messages], str | None] | None = None) -> Choice:
    """The Choice for one request; raises UnknownModel (with the router's decision) when nothing serves it.

    ``messages`` gives the conversation in OpenAI chat shape; it is called only when the router is
    asked (a request that needs no router pays for no conversion). ``memo``, when given, remembers
    router-free choices: a known model that needs no router gets the same choice on every request
    of the bundle (keyed by its digest, so a memo never outlives its bundle's meaning). ``sessions``
    (runtime/decide/affinity.py) and ``session`` (the conversation's name, from its messages): a
    routed request of a pinned session may be served by its pinned model without the router."""
    key = ("choice", bundle.digest, requested)
    if memo is not None:
        known = memo.get(key)
        if known is not None:
            return known
    resolution = bundle.resolve_model(requested)
    if sessions is not None and wants_router(bundle, resolution):
        return await _decide_in_session(bundle, router, requested, resolution, messages(), rank, sessions, session)
    decision = await router.decide(messages()) if wants_router(bundle, resolution) else None
    choice = choose(bundle, requested, resolution, decision, rank)
    if memo is not None and decision is None and resolution is not None:  # only names the bundle knows: it stays small
        memo[key] = choice
    return choice


async def _decide_in_session(bundle: Bundle, router: RouterService, requested: str | None, resolution: Any,
                             conversation: Messages, rank: Callable[[Route], tuple[str, ...]] | None,
                             sessions: PinStore, session: Callable[[Messages], str | None] | None) -> Choice:
    """A routed request when sessions are kept: the pinned model (affinity on, or a non-user tail with
    route_on_user_only) answers without the router; otherwise the router decides and the session is pinned."""
    name = session(conversation) if session is not None else None
    pin = await sessions.get(name) if name is not None else None
    if pin is not None and (sessions.policy.affinity or (sessions.policy.route_on_user_only and not last_is_user(conversation))):
        provider = bundle.provider(pin.provider)
        if provider is not None and (pin.route is None or bundle.route(pin.route) is not None):
            return Choice(provider, WHY_AFFINITY, requested, route=pin.route)
    decision = await router.decide(conversation)
    choice = choose(bundle, requested, resolution, decision, rank)
    if name is not None:
        await sessions.pin(name, Pin(choice.provider.name, choice.route))
    return choice
