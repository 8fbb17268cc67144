"""Prometheus metrics: one CollectorRegistry per app (never the global one), plus the /metrics body.

Stage: observability (built in the lifespan, reached through request.state). Imports prometheus_client only.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class LabelledChildren:
    """``child(metric, *labels)`` is ``metric.labels(*labels)``, looked up once per metric and label
    set (``labels()`` takes a lock and builds its key on every call: too much for the hot path)."""

    def __init__(self) -> None:
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def __call__(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class Metrics:
    """Counters and histograms by endpoint, route, provider and status."""

    def __init__(self, clients: Any = None) -> None:
        """``clients``: the process's client connections (``open``, ``peak``, ``cap``, ``rejected``; runtime/http/connections.py)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("archc_requests", "Requests answered", ["endpoint", "route", "provider", "status"], registry=r)
        self.latency = Histogram("archc_request_seconds", "Time to the last byte of the answer", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.router_decisions = Counter("archc_router_decisions", "Router decisions", ["route", "fallback", "cache"], registry=r)
        self.router_latency = Histogram("archc_router_seconds", "Router decision time", buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter("archc_upstream_errors", "Upstream failures", ["provider", "kind"], registry=r)
        self.tokens = Counter("archc_tokens", "Tokens reported by upstreams", ["provider", "direction"], registry=r)
        self.errors = Counter("archc_errors", "Error answers by kind", ["endpoint", "kind"], registry=r)
        self.shared_cache_errors = Counter("archc_router_shared_cache_errors", "Shared decision cache (Redis) calls that "
                                           "failed: the replica decided on its own", registry=r)
        self.cache_breakpoints = Counter("archc_cache_breakpoints_injected", "Anthropic requests given cache_control "
                                         "breakpoints (prompt_caching.inject_cache_control)", ["provider"], registry=r)
        self.session_store_errors = Counter("archc_session_store_errors", "Session store (Redis) calls that failed: the "
                                            "session was routed as a new one", registry=r)
        self.switch_decisions = Counter("archc_session_switch_decisions", "A routing budget's verdicts on warm sessions' "
                                        "turns (routing.routing_budget)", ["decision", "reason"], registry=r)

        if clients is not None:
            r.register(_ClientConnectionsCollector(clients))
        self.child = LabelledChildren()

    def request_done(self, endpoint: str, route: str, provider: str, status: int, seconds: float) -> None:
        self.child(self.requests, endpoint, route, provider, str(status)).inc()
        self.child(self.latency, endpoint).observe(seconds)

    def decision(self, route: str | None, fallback: str | None, cache_hit: bool, router_ms: float) -> None:
        self.child(self.router_decisions, route or "none", fallback or "", "hit" if cache_hit else "miss").inc()
        self.router_latency.observe(router_ms / 1000.0)

    def usage(self, provider: str, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        if prompt_tokens:
            self.child(self.tokens, provider, "in").inc(prompt_tokens)
        if completion_tokens:
            self.child(self.tokens, provider, "out").inc(completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ClientConnectionsCollector:
    """Client connection figures, read when /metrics is scraped (the counts live in runtime/http/connections.py)."""

    def __init__(self, clients: Any) -> None:
        self.clients = clients

    def collect(self) -> Any:
        c = self.clients
        yield GaugeMetricFamily("archc_client_connections", "Client connections open in this process", value=c.open)
        yield GaugeMetricFamily("archc_client_connections_peak", "Most client connections open at once", value=c.peak)
        yield GaugeMetricFamily("archc_client_connections_cap", "Client connections this process accepts", value=c.cap)
        yield CounterMetricFamily("archc_client_connections_rejected", "Connections answered 503 at the cap",
                                  value=c.rejected)
