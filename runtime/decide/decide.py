"""The one decision pipeline: requested model -> resolve -> (router) -> choose -> Choice.

Stage: decide. Every hot endpoint (runtime/http/chat.py, ``/v1/route``) and the compiler's replays
(``archc test``, ``archc test --impact``, which get it from archc/cli) call ``decide``; nothing
else asks the router or applies the routing semantics. Imports archc.bundle, runtime.errors,
runtime.decide.choose and the router's types (runtime/router/decision.py); no model library.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, MutableMapping, Sequence

from archc.bundle import Bundle, Route
from runtime.decide.choose import Choice, choose, wants_router
from runtime.router.decision import RouterService

Messages = Sequence[Mapping[str, Any]]


async def decide(bundle: Bundle, router: RouterService, requested: str | None, messages: Callable[[], Messages],
                 *, memo: MutableMapping[tuple, Any] | None = None,
                 rank: Callable[[Route], tuple[str, ...]] | None = None) -> Choice:
    """The Choice for one request; raises UnknownModel (with the router's decision) when nothing serves it.

    ``messages`` gives the conversation in OpenAI chat shape; it is called only when the router is
    asked (a request that needs no router pays for no conversion). ``memo``, when given, remembers
    router-free choices: a known model that needs no router gets the same choice on every request
    of the bundle (keyed by its digest, so a memo never outlives its bundle's meaning)."""
    key = ("choice", bundle.digest, requested)
    if memo is not None:
        known = memo.get(key)
        if known is not None:
            return known
    resolution = bundle.resolve_model(requested)
    decision = await router.decide(messages()) if wants_router(bundle, resolution) else None
    choice = choose(bundle, requested, resolution, decision, rank)
    if memo is not None and decision is None and resolution is not None:  # only names the bundle knows: it stays small
        memo[key] = choice
    return choice
