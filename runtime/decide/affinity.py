"""Session affinity: a conversation stays on the model it started on (Plano 0.4's ``prompt_caching``
and ``routing.route_on_user_only``), in this process.

Stage: decide (pure data and an in-memory table; no I/O: the Redis store, shared by replicas, is
runtime/live/pins.py). A session is named by the client's
``X-Model-Affinity`` header, else derived from what stays fixed across an agent's turns: the
system text, the tool names and the first user message (a sha256 of them, so no prompt text is
kept). With affinity on, a routed request of a pinned session is served by its pinned model
without asking the router (``x-arch-why: affinity``), so the provider's prompt cache stays warm;
the first routed decision pins it. With ``route_on_user_only``, a request whose last message is
not a user turn (a tool result, an assistant continuation) replays the session's last decision
instead of asking the router. Entries expire after ``ttl_s`` and the least recently used go first
past ``max_entries``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from runtime.decide.budget import BudgetPolicy

DEFAULT_TTL_S = 600
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Pin:
    """A session's model (``provider``) and the route that named it; with a routing budget
    (runtime/decide/budget.py), also its first model (``default``) and its running totals: the
    never-switch baseline and the switch spend (USD), and the switches taken."""

    provider: str
    route: str | None
    default: str | None = None
    baseline: float = 0.0
    spend: float = 0.0
    switches: int = 0


@dataclass(frozen=True)
class SessionPolicy:
    """From the bundle's ``sessions`` extension (the compiler writes it from Plano's keys).
    ``redis_url``: pins kept in Redis, shared by every replica (``routing.session_cache``), else in this
    process; ``tenant_header``: the request header whose value scopes session names (one tenant's
    session never meets another's, even under the same ``X-Model-Affinity``)."""

    affinity: bool = False
    route_on_user_only: bool = False
    ttl_s: float = DEFAULT_TTL_S
    max_entries: int = DEFAULT_MAX_ENTRIES
    redis_url: str | None = None
    tenant_header: str | None = None
    budget: BudgetPolicy | None = None  # routing.routing_budget: a warm session's switches are gated (runtime/decide/budget.py)

    @classmethod
    def from_extensions(cls, extensions: Mapping[str, Any]) -> "SessionPolicy | None":
        spec = extensions.get("sessions")
        budget = BudgetPolicy.from_spec(spec.get("budget")) if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not (spec.get("affinity") or spec.get("route_on_user_only") or budget):
            return None
        cache = spec.get("cache") if isinstance(spec.get("cache"), dict) else {}
        url = cache.get("url") if cache.get("type") == "redis" and isinstance(cache.get("url"), str) else None
        tenant = cache.get("tenant_header") if isinstance(cache.get("tenant_header"), str) else None
        return cls(bool(spec.get("affinity")), bool(spec.get("route_on_user_only")),
                   float(spec.get("ttl_s") or DEFAULT_TTL_S), int(spec.get("max_entries") or DEFAULT_MAX_ENTRIES),
                   url, tenant.lower() if tenant else None, budget)


def scoped(name: str, tenant: str | None) -> str:
    """A session name within its tenant (``tenant_header``'s value; none: the shared space)."""
    return name if tenant is None else f"t-{tenant[:200]}/{name}"


def session_key(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> str | None:
    """A conversation's derived name: sha256 of its system text, tool names and first user message
    (None when it has no user message yet). Each part is hashed as it is, followed by a 0x1f byte,
    with a NUL part between the three kinds; the system text is fed as it is (no copy of it)."""
    system: list[Any] = []
    first_user: Any = None
    seen_user = False
    for m in messages:
        if type(m) is not dict and not isinstance(m, Mapping):
            continue
        role = m.get("role")
        if role == "system" or role == "developer":
            system.append(m.get("content"))
        elif role == "user" and not seen_user:
            first_user, seen_user = m.get("content"), True
    if first_user is None:
        return None
    names = sorted(str((t.get("function") or t).get("name")) for t in tools
                   if type(t) is dict or isinstance(t, Mapping)) if isinstance(tools, list) else []
    digest = hashlib.sha256()
    for part in system:
        digest.update(_text(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    rest = "\x00\x1f" + "".join(name + "\x1f" for name in names) + "\x00\x1f" + _text(first_user) + "\x1f"
    digest.update(rest.encode("utf-8", "surrogatepass"))
    return "s-" + digest.hexdigest()[:32]


def _text(part: Any) -> str:
    return part if isinstance(part, str) else json.dumps(part, sort_keys=True, default=str)


def last_is_user(messages: Sequence[Mapping[str, Any]]) -> bool:
    return bool(messages) and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "user"


class PinStore(Protocol):
    """Where pinned sessions live: this process (``Sessions``) or Redis (runtime/live/pins.py)."""

    policy: SessionPolicy

    async def get(self, session: str) -> Pin | None: ...
    async def pin(self, session: str, pin: Pin) -> None: ...
    async def aclose(self) -> None: ...


class Sessions:
    """Pinned sessions in this process: bounded by count (least recently used first) and by age."""

    def __init__(self, policy: SessionPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._pins: OrderedDict[str, tuple[Pin, float]] = OrderedDict()

    async def get(self, session: str) -> Pin | None:
        return self.lookup(session)

    async def pin(self, session: str, pin: Pin) -> None:
        self.keep(session, pin)

    async def aclose(self) -> None:
        self._pins.clear()

    def lookup(self, session: str) -> Pin | None:
        found = self._pins.get(session)
        if found is None:
            return None
        pin, at = found
        if self.clock() - at > self.policy.ttl_s:
            del self._pins[session]
            return None
        self._pins.move_to_end(session)
        return pin

    def keep(self, session: str, pin: Pin) -> None:
        self._pins[session] = (pin, self.clock())
        self._pins.move_to_end(session)
        while len(self._pins) > self.policy.max_entries:
            self._pins.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pins)
