"""Emit stage: resolved config -> sealed Bundle (canonical bytes + sha256 digest).

Imports: archc.bundle, archc.compiler.resolve (its output type), archc.compiler.router_prompt, archc.diagnostics.
Deterministic: lists keep config order, the source is named by file name and content digest only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Mapping

from archc import __version__
from archc.bundle import Bundle, BundleError, seal
from archc.diagnostics import Diagnostic, Severity, Span
from archc.compiler.resolve import Resolved
from archc.compiler.router_prompt import TEMPLATE_SHA256, render_prompt


def _plain(obj: Any) -> Any:
    """dataclass dicts -> JSON-ready data (tuples become lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _rows(items: Any) -> list[dict[str, Any]]:
    return [_plain(dataclasses.asdict(x)) for x in items]


def _sessions(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """Plano's prompt_caching (session affinity), routing.route_on_user_only and routing.routing_budget, as the runtime reads them."""
    caching = config.get("prompt_caching") if isinstance(config.get("prompt_caching"), dict) else {}
    routing = config.get("routing") if isinstance(config.get("routing"), dict) else {}
    affinity = caching.get("enabled") is True and caching.get("session_affinity") is not False
    user_only = routing.get("route_on_user_only") is True
    inject = caching.get("enabled") is True and caching.get("inject_cache_control") is not False
    budget = routing.get("routing_budget") if isinstance(routing.get("routing_budget"), dict) else None
    if not (affinity or user_only or inject or budget):
        return None
    out: dict[str, Any] = {"affinity": affinity, "route_on_user_only": user_only,
           "ttl_s": caching.get("session_ttl_seconds") or routing.get("session_ttl_seconds") or 600,
           "max_entries": routing.get("session_max_entries") or 10000}
    cache = routing.get("session_cache") if isinstance(routing.get("session_cache"), dict) else {}
    if cache.get("type") == "redis" or cache.get("tenant_header"):  # only when set: other bundles keep their digests
        out["cache"] = {k: cache[k] for k in ("type", "url", "tenant_header") if k in cache}
    if budget:  # a warm session's switches are gated by what they cost (runtime/decide/budget.py)
        out["budget"] = {k: budget[k] for k in ("max_switch_spend_pct", "cache_read_discount") if k in budget}
    if inject:  # Anthropic upstreams get cache_control breakpoints (runtime/wire/_anthropic_cache.py)
        out["inject_cache_control"] = {"min_prefix_tokens": caching.get("min_prefix_tokens") or 1024}
    return out


def source_digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def bundle_dict(resolved: Resolved, config: Mapping[str, Any], *, file_name: str, raw: bytes) -> dict[str, Any]:
    """The bundle as plain data (before sealing)."""
    router = None
    if resolved.routes:
        pairs = [(r.name, r.description) for r in resolved.routes]
        router = {
            "model": resolved.router_model,
            "prompt": render_prompt(pairs),
            "route_names": [r.name for r in resolved.routes],
            "template_sha256": TEMPLATE_SHA256,
            "device": resolved.router_device,
            "compute_type": resolved.router_compute_type,
            "provider": resolved.router_provider,
            "backend": resolved.router_backend,
        }
        if resolved.router_remote_api != "chat":  # written only when set (archc.bundle._WRITTEN_WHEN_SET)
            router.update(remote_api=resolved.router_remote_api, chat_template=resolved.router_chat_template)
    extensions: dict[str, Any] = {}
    if isinstance(config.get("gateway"), dict):
        extensions["gateway"] = config["gateway"]
    if isinstance(config.get("mode"), str):
        extensions["mode"] = config["mode"]
    sessions = _sessions(config)
    if sessions is not None:  # the runtime keeps conversations on their model (runtime/decide/affinity.py)
        extensions["sessions"] = sessions
    if isinstance(config.get("model_metrics_sources"), list):  # the runtime reads the cost source (runtime/live/costs.py)
        extensions["model_metrics_sources"] = config["model_metrics_sources"]
    return {
        "format_version": 1,
        "digest": "",
        "source": {"file": file_name, "sha256": source_digest(raw), "compiler": f"archc {__version__}"},
        "listeners": _rows(resolved.listeners),
        "providers": _rows(resolved.providers),
        "aliases": _rows(resolved.aliases),
        "routes": _rows(resolved.routes),
        "default_model": resolved.default_model,
        "routing": dataclasses.asdict(resolved.routing),
        "router": router,
        "ratelimits": resolved.ratelimits,
        "tracing": config.get("tracing") if isinstance(config.get("tracing"), dict) else None,
        "overrides": config.get("overrides") if isinstance(config.get("overrides"), dict) else {},
        "extensions": extensions,
    }


def emit(resolved: Resolved, config: Mapping[str, Any], *, file_name: str, raw: bytes) -> tuple[Bundle | None, list[Diagnostic]]:
    """Seal the bundle and prove it round-trips through its own loader."""
    try:
        bundle = seal(bundle_dict(resolved, config, file_name=file_name, raw=raw))
        Bundle.from_bytes(bundle.to_bytes())
    except (BundleError, TypeError, ValueError) as exc:
        return None, [Diagnostic("E401", Severity.ERROR, f"bundle failed its own validation: {exc}", Span(file_name))]
    return bundle, []
