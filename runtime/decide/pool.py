"""A route's model pool in serving order: Plano 0.4's ``selection_policy``.

Stage: decide (pure ranking over numbers the gateway keeps; no I/O). ``none`` keeps the configured
order; ``cheapest`` orders by blended price (input + output per million tokens, from the cost
source, runtime/live/costs.py) with unpriced models last, as Plano ranks them; ``fastest`` orders
by each model's latency from the latency source (Prometheus, runtime/live/latency.py) where it
names the model, else the gateway's own recent latency of it (an exponentially weighted mean of its
successful attempts), an unmeasured model first, so that every member gets measured and a model
that has become slow is left for one that has not. The chain that serves the request is this
order; a model in retry cooldown is skipped there (runtime/upstream/retry.py).
"""

from __future__ import annotations

from typing import Mapping

from archc.bundle import Route

LATENCY_WEIGHT = 0.3  # the newest attempt's share in a model's latency (about the last 5 attempts count)


class PoolRanker:
    """The numbers a policy ranks by: ``costs`` (model name -> blended price), replaced whole by the
    cost source; ``latency_ms`` (model name -> recent mean), fed by ``observe``."""

    def __init__(self, costs: Mapping[str, float] | None = None) -> None:
        self.costs: Mapping[str, float] = dict(costs or {})
        self.rates: Mapping[str, tuple[float, float | None]] = {}  # input and cache_read prices: a routing budget's (budget.py)
        self.latency_ms: dict[str, float] = {}  # measured here
        self.reported_ms: Mapping[str, float] = {}  # from a latency source (Prometheus), replaced whole
        self._ranked_ms: dict[str, float] = {}  # what ``fastest`` ranks by: reported, else measured

    def observe(self, model: str, ms: float) -> None:
        """One successful attempt of ``model`` took ``ms`` (until its answer began)."""
        before = self.latency_ms.get(model)
        self.latency_ms[model] = now = ms if before is None else before + LATENCY_WEIGHT * (ms - before)
        if model not in self.reported_ms:
            self._ranked_ms[model] = now

    def report_latency(self, reported: Mapping[str, float]) -> None:
        """A latency source's numbers (milliseconds by model): they rank the models they name."""
        self.reported_ms = dict(reported)
        self._ranked_ms = {**self.latency_ms, **self.reported_ms}

    def rank(self, route: Route) -> tuple[str, ...]:
        pool = route.pool
        if route.policy == "cheapest":
            costs = self.costs
            return tuple(sorted(pool, key=lambda m: (m not in costs, costs.get(m, 0.0))))
        if route.policy == "fastest":
            latency = self._ranked_ms
            return tuple(sorted(pool, key=lambda m: (m in latency, latency.get(m, 0.0))))
        return pool
