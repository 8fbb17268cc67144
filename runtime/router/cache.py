"""Router decision cache: an exact, bounded LRU in front of the router service.

Stage: runtime router, below `service` (whose build_router wraps its router in this one).
Imports `runtime.router.decision`, `runtime.router.prompt` (the selection the backend itself uses) and the stdlib.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from runtime.router.decision import Decision, RouterService
from runtime.router.prompt import compact_json, select_conversation

DEFAULT_CACHE_SIZE = 1024
# Fallbacks that say something about this run, not about the input: never cached.
UNCACHEABLE_FALLBACKS = frozenset({"timeout", "error", "router_unavailable"})

LookupHook = Callable[[bool], None]


def cache_key(bundle_digest: str, conversation: Sequence[Mapping[str, Any]]) -> str:
    """sha256 over the digest and the conversation serialized as the prompt serializes it."""
    text = compact_json([dict(turn) for turn in conversation])
    return hashlib.sha256(f"{bundle_digest}\n{text}".encode("utf-8")).hexdigest()


def cacheable(decision: Decision) -> bool:
    return decision.fallback not in UNCACHEABLE_FALLBACKS


class CachedRouter:
    """Wraps ``inner``; ``decide`` never raises, like every RouterService.

    Exact by construction: the key is the bundle digest plus the router's whole input, the
    selected and serialized conversation (the digest names the route table and template), and
    decoding is greedy. An agent turn in Claude Code adds only tool calls and tool results, which
    selection drops, so every continuation of a turn is a hit. Decisions that describe the run,
    not the input (``timeout``, ``error``), are never stored.

    ``hits``/``misses``/``evictions`` are plain counters the app may read (``stats()``); ``on_lookup``
    is called with True on a hit and False on a miss, for Prometheus counters. Concurrent requests
    with the same key share one inner decision (the first runs the model, the others wait).
    """

    def __init__(
        self,
        inner: RouterService,
        *,
        bundle_digest: str,
        size: int = DEFAULT_CACHE_SIZE,
        token_budget: int = 2048,
        on_lookup: LookupHook | None = None,
        shared: Any = None,
    ) -> None:
        if size < 1:
            raise ValueError("router cache size must be at least 1")
        self.inner = inner
        self.bundle_digest = bundle_digest
        self.size = size
        self.token_budget = token_budget
        self.on_lookup = on_lookup
        self.shared = shared  # runtime/router/shared.py's SharedDecisions: other replicas' decisions, on a local miss
        self.hits = 0
        self.shared_hits = 0
        self.misses = 0
        self.evictions = 0
        self._writes: set[asyncio.Task[None]] = set()
        self._entries: OrderedDict[str, Decision] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Decision | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        return {"size": len(self._entries), "capacity": self.size, "hits": self.hits, "shared_hits": self.shared_hits,
                "misses": self.misses, "evictions": self.evictions}

    def key_for(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """The cache key for ``messages``, or None when the input cannot be keyed (bypass)."""
        try:
            return cache_key(self.bundle_digest, select_conversation(messages, self.token_budget))
        except (TypeError, ValueError, AttributeError, KeyError):
            return None

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        started = time.perf_counter()
        key = self.key_for(messages)
        if key is None:
            return await self.inner.decide(messages)
        stored = self._entries.get(key)
        if stored is not None:
            self._entries.move_to_end(key)
            return self._hit(stored, started)
        pending = self._inflight.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is None:  # the first caller was cancelled: decide for ourselves
                return await self.inner.decide(messages)
            return self._hit(shared, started) if cacheable(shared) else shared
        return await self._miss(key, messages, started)

    async def aclose(self) -> None:
        self._entries.clear()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.shared is not None:
            await self.shared.aclose()
        await self.inner.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _hit(self, decision: Decision, started: float) -> Decision:
        self.hits += 1
        self._notify(True)
        lookup_ms = (time.perf_counter() - started) * 1000.0
        return dataclasses.replace(decision, cache_hit=True, router_ms=lookup_ms)

    async def _miss(self, key: str, messages: Sequence[Mapping[str, Any]], started: float) -> Decision:
        future: asyncio.Future[Decision | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        decision: Decision | None = None
        from_shared = False
        try:
            if self.shared is not None:  # another replica may have decided this turn already
                decision = await self.shared.get(key)
                from_shared = decision is not None
            if decision is None:
                self.misses += 1
                self._notify(False)
                # Inference ran, so this is a miss whatever the inner router says (a backend's own
                # flag is about its prefix cache); hits set the flag again.
                decision = dataclasses.replace(await self.inner.decide(messages), cache_hit=False)
        finally:
            # On cancellation (client gone) waiters get None and run the router themselves.
            self._inflight.pop(key, None)
            future.set_result(decision)
        if from_shared:
            self.shared_hits += 1
            self._store(key, decision)
            return self._hit(decision, started)
        if cacheable(decision):
            self._store(key, decision)
            if self.shared is not None:  # written behind the answer: the client does not wait for Redis
                task = asyncio.get_running_loop().create_task(self.shared.put(key, decision))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
        return decision

    def _store(self, key: str, decision: Decision) -> None:
        self._entries[key] = decision
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
            self.evictions += 1

    def _notify(self, hit: bool) -> None:
        if self.on_lookup is not None:
            self.on_lookup(hit)
