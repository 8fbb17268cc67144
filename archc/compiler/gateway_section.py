"""Gateway section checks (archc-only top-level ``gateway:``): semantics the schema cannot say.

Stage: validate helper. Imports only archc.diagnostics. The section's shape is checked by
schemas/gateway.schema.json; after both pass it is copied verbatim into bundle.extensions["gateway"].
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, Sequence

from archc.diagnostics import Diagnostic, Severity, Span

SpanFor = Callable[[tuple], Span]


def check_gateway(section: Mapping[str, Any], provider_names: Sequence[str], spans: SpanFor) -> list[Diagnostic]:
    """Diagnostics (V211) for a gateway section; ``spans(path)`` locates a path inside the section."""
    diags: list[Diagnostic] = []

    def err(path: tuple, message: str, hint: str = "") -> None:
        where = "gateway" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        diags.append(Diagnostic("V211", Severity.ERROR, message, spans(path), where, hint))

    known = list(provider_names)
    fallbacks = section.get("fallbacks")
    if isinstance(fallbacks, Mapping):
        for source, targets in fallbacks.items():
            if source not in known:
                err(("fallbacks", source), f"fallbacks: {source!r} is not a provider name", _close(source, known))
            if not isinstance(targets, list):
                continue
            for i, target in enumerate(targets):
                if not isinstance(target, str):
                    continue
                if target not in known:
                    err(("fallbacks", source, i), f"fallbacks.{source}: {target!r} is not a provider name",
                        _close(target, known))
                elif target == source:
                    err(("fallbacks", source, i), f"fallbacks.{source}: a provider cannot fall back to itself")
            if len(set(t for t in targets if isinstance(t, str))) != len(targets):
                err(("fallbacks", source), f"fallbacks.{source}: a provider is listed twice")

    keys = section.get("keys")
    if section.get("require_keys") is True and not keys:
        err(("require_keys",), "require_keys is true but no keys are configured", "add gateway.keys entries")
    if isinstance(keys, list):
        seen: set[str] = set()
        for i, entry in enumerate(keys):
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(name, str):
                if name in seen:
                    err(("keys", i, "name"), f"keys: name {name!r} is used twice")
                seen.add(name)

    limits = section.get("request_limits")
    if isinstance(limits, list):
        names = [e.get("name") for e in keys if isinstance(e, Mapping)] if isinstance(keys, list) else []
        for i, item in enumerate(limits):
            ref = item.get("gateway_key") if isinstance(item, Mapping) else None
            if isinstance(ref, str) and ref != "*" and ref not in names:
                err(("request_limits", i, "gateway_key"), f"request_limits: {ref!r} is not a gateway key name",
                    _close(ref, [n for n in names if isinstance(n, str)]) if names else "add gateway.keys entries")

    retries = section.get("retries")
    if isinstance(retries, Mapping):
        base, cap = retries.get("backoff_ms"), retries.get("backoff_cap_ms")
        if isinstance(base, int) and isinstance(cap, int) and cap < base:
            err(("retries", "backoff_cap_ms"), "retries.backoff_cap_ms is smaller than backoff_ms")

    timeouts = section.get("timeouts")
    if isinstance(timeouts, Mapping):
        total = timeouts.get("total_ms")
        for key in ("connect_ms", "first_byte_ms"):
            part = timeouts.get(key)
            if isinstance(part, int) and isinstance(total, int) and part > total:
                err(("timeouts", key), f"timeouts.{key} is larger than timeouts.total_ms")
    return diags


def _close(name: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else "providers: " + ", ".join(known[:10])
