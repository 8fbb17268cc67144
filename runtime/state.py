"""The gateway's per-app state, built by the lifespan in runtime/app.py and read by the handlers.

Stage: data. Handlers reach it as ``request.state.gateway``; nothing here is module-level mutable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from archc.bundle import Bundle
from runtime.decide.affinity import PinStore
from runtime.decide.pool import PoolRanker
from runtime.observe.metrics import Metrics
from runtime.upstream.targets import Targets
from runtime.router.decision import RouterService
from runtime.http.sessions import SessionStore
from runtime.http.stored import MemoryResponses, ResponseStore
from runtime.settings import Settings
from runtime.upstream.client import Upstream


@dataclass
class GatewayState:
    """Everything a request needs: the bundle, its provider targets, the router, the upstream sender."""

    bundle: Bundle
    settings: Settings
    targets: Targets
    router: RouterService
    upstream: Upstream
    metrics: Metrics
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("archc.runtime"))
    sessions: SessionStore = field(default_factory=SessionStore)  # Claude Code sessions' last decisions
    stored: ResponseStore = field(default_factory=MemoryResponses)  # Responses kept for previous_response_id
    pools: PoolRanker = field(default_factory=PoolRanker)  # route pools' prices and measured latencies (kept across reloads)
    pins: PinStore | None = None  # pinned sessions (prompt_caching, route_on_user_only; in process or Redis), None when the bundle keeps none
    cache_breakpoints: int | None = None  # prompt_caching.inject_cache_control's min_prefix_tokens, None when off
    # What is the same for every request of this bundle (router-free choices, raw answer headers),
    # keyed with the bundle's digest too; a reload builds a new state (dataclasses.replace), and an empty memo.
    memo: dict[tuple, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
