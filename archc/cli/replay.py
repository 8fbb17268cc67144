"""Golden replays through the runtime's own pipeline: the bridge archc test and --impact are given.

Stage: cli. ``open_replay(bundle, model_dir)`` opens the runtime's router for a bundle (its
deadline stretched: a slow CI runner must not turn decisions into timeouts) and decides each case
exactly as the gateway decides a request: the client's request validator and adapter
(runtime.wire.adapt), then ``runtime.decide.decide``. archc/review/golden.py and archc/review/impact.py see only the
``golden.Replay`` protocol (archc/cli/ is the only archc package that imports the runtime).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from archc.review import golden
from archc.bundle import Bundle
from archc.review.golden import Case, Outcome
from runtime.wire import adapt
from runtime.decide.choose import wants_router
from runtime.decide.decide import decide
from runtime.errors import GatewayError
from runtime.router.decision import NullRouter, RouterService
from runtime.router.models import default_model_dir
from runtime.router.service import build_router
from runtime.wire import WireFormat

# Golden replays wait this long for the router: a deadline is a property of the machine the
# test runs on, not of the config.
REPLAY_TIMEOUT_MS = 120_000


class RuntimeReplay:
    """``golden.Replay`` over a bundle and a router service."""

    def __init__(self, bundle: Bundle, router: RouterService, *, missing: str | None = None,
                 where: Path | None = None) -> None:
        self.bundle = bundle
        self.router = router
        self.missing = missing
        self.where = where

    def asks_router(self, case: Case) -> bool:
        return wants_router(self.bundle, self.bundle.resolve_model(case.model))

    async def outcome(self, case: Case) -> Outcome:
        try:
            messages = openai_messages(case)
        except GatewayError as exc:  # the gateway would answer 400
            return Outcome(route=None, model=None, fallback=None, error=f"{exc.kind}: {exc.message}")
        try:
            choice = await decide(self.bundle, self.router, case.model, lambda: messages)
        except GatewayError as exc:  # UnknownModel: carries the router's decision when it was asked
            decision = getattr(exc, "decision", None)
            return Outcome(route=None, model=None, fallback=decision.fallback if decision else None,
                           router_ms=decision.router_ms if decision else 0.0, error=f"{exc.kind}: {exc.message}")
        fallback = choice.fallback
        if choice.route is None and fallback is None:
            fallback = golden.no_route_fallback(self.bundle)
        return Outcome(route=choice.route, model=choice.provider.name, fallback=fallback,
                       router_ms=choice.router_ms, confidence=choice.confidence)

    async def aclose(self) -> None:
        await self.router.aclose()


def openai_messages(case: Case) -> list[Any]:
    """The conversation as the router sees it, through the runtime's own adapter: the client's
    request validator, then (Anthropic, Responses) conversion to OpenAI chat. Raises the runtime's
    InvalidRequest for a conversation the gateway would refuse with a 400."""
    client_format = WireFormat(case.format)
    # The validators need a model; resolution uses the case's own (possibly absent) model.
    body: dict[str, Any] = {"model": case.model or "golden", "messages": [dict(m) for m in case.messages]}
    if client_format is WireFormat.OPENAI_RESPONSES:
        body = {"model": case.model or "golden", "input": case.input}
        if case.instructions is not None:
            body["instructions"] = case.instructions
    if client_format is WireFormat.ANTHROPIC_MESSAGES:
        body["max_tokens"] = 1
        if case.system is not None:
            body["system"] = case.system
    body = adapt.VALIDATORS[client_format](body)
    return list(adapt.openai_messages(body, client_format))


def open_replay(bundle: Bundle, model_dir: Path | None = None) -> RuntimeReplay:
    """The runtime's decisions for ``bundle``; ``model_dir`` None means the installed model for
    ``bundle.router.model`` (as `archc serve`)."""
    patient = dataclasses.replace(bundle, routing=dataclasses.replace(
        bundle.routing, timeout_ms=max(bundle.routing.timeout_ms, REPLAY_TIMEOUT_MS)))
    from runtime.app import remote_router  # the router on a server, when the config names one
    from runtime.settings import Settings

    remote = remote_router(patient, Settings.from_env())
    if remote is not None:
        return RuntimeReplay(bundle, remote)
    router = build_router(patient, model_dir=model_dir)
    if isinstance(router, NullRouter) and router.reason in ("no_router_model", "error"):
        model = bundle.router.model if bundle.router else "?"
        missing = (f"router model {model!r} is not available ({router.detail or router.reason}); install it "
                   "with `archc model pull` or pass --model-dir DIR")
        return RuntimeReplay(bundle, router, missing=missing)
    return RuntimeReplay(bundle, router, where=_router_location(bundle, model_dir))


def _router_location(bundle: Bundle, model_dir: Path | None) -> Path | None:
    """The model folder a replay uses: ``model_dir``, else the installed model (as `archc serve`)."""
    if model_dir is not None:
        return Path(model_dir)
    return default_model_dir(bundle.router.model) if bundle.router is not None and bundle.routes else None
