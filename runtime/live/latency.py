"""Model latencies for ``prefer: fastest`` pools from Prometheus: Plano 0.4's latency source
(``model_metrics_sources``, ``type: latency``, ``provider: prometheus``, ``url``, ``query``).

Stage: live (a background task beside the cost source, runtime/live/costs.py). Every
``refresh_interval`` seconds (default 60) the instant ``query`` is asked of ``url``'s HTTP API
(``GET /api/v1/query``); each series of the vector it answers names a model by its ``model_name``
label (else ``model``, else its only label) and gives its latency in seconds, as Plano's example
query (``avg by (model_name) (rate(plano_llm_latency_seconds_sum[5m]))``) does. Models the query
gives are ranked by it (``target.reported_ms``, runtime/decide/pool.py); the others by the gateway's
own measurements. A source that cannot be read keeps the last good numbers (logged); requests never
wait on it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping
from urllib.parse import urlencode

from runtime.live.costs import SourceRefresher

DEFAULT_REFRESH_S = 60
_LABELS = ("model_name", "model")


def latency_source(extensions: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bundle's Prometheus latency source, if it has one."""
    for source in extensions.get("model_metrics_sources") or ():
        if isinstance(source, dict) and source.get("type") == "latency" and source.get("provider") == "prometheus":
            return source
    return None


def latencies(answer: Any, models: Iterable[str]) -> dict[str, float]:
    """``{model: milliseconds}`` from a Prometheus query answer, for the ``models`` it names."""
    wanted = set(models)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise ValueError(f"the query did not succeed: {str(answer.get('error') if isinstance(answer, dict) else answer)[:200]}")
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise ValueError("the query's answer is not an instant vector")
    out: dict[str, float] = {}
    for series in data["result"]:
        metric = series.get("metric") if isinstance(series, dict) else None
        value = series.get("value") if isinstance(series, dict) else None
        if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
            continue
        name = next((metric[k] for k in _LABELS if isinstance(metric.get(k), str)), None)
        if name is None and len(metric) == 1:
            name = next(iter(metric.values()))
        try:
            seconds = float(value[1])
        except (TypeError, ValueError):
            continue
        if name in wanted and math.isfinite(seconds) and seconds >= 0:
            out[name] = seconds * 1000.0
    return out


class LatencyRefresher(SourceRefresher):
    """The latency source's numbers, into ``target.report_latency``."""

    what = "latency source"

    def __init__(self, source: Mapping[str, Any], models: Iterable[str], target: Any) -> None:
        url = str(source["url"]).rstrip("/") + "/api/v1/query?" + urlencode({"query": str(source["query"])})
        super().__init__(url, float(source.get("refresh_interval") or DEFAULT_REFRESH_S), target)
        self.models = tuple(models)

    def apply(self, raw: bytes) -> None:
        self.target.report_latency(latencies(json.loads(raw), self.models))
