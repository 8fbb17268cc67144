"""Rate-limit rules: read from the bundle, matched to a request, turned into bucket keys; pure.

Stage: runtime rate limiting, the policy below the limiter. Imports archc.bundle and the standard library.
Rules come from archgw's ``ratelimits`` (prompt tokens per unit, per model and header selector)
and archc's ``gateway.request_limits`` (requests or tokens per unit, optionally per gateway key).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping

from archc.bundle import Bundle

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Rule:
    """One limit. ``kind`` is ``requests`` or ``tokens``; ``value == "*"`` (selector) or
    ``gateway_key == "*"`` give each distinct header value / key its own bucket."""

    kind: str
    limit: int
    window_s: float
    model: str | None = None
    header: str | None = None
    value: str | None = None
    gateway_key: str | None = None
    origin: str = ""  # where it came from, for logs: ``ratelimits[0]``, ``gateway.request_limits[1]``

    @property
    def rule_id(self) -> str:
        """Stable across reloads while the rule is unchanged, so counters survive a swap."""
        text = json.dumps([self.kind, self.limit, self.window_s, self.model, self.header, self.value, self.gateway_key])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RequestInfo:
    model: str | None
    headers: Mapping[str, str]
    gateway_key: str | None
    tokens: int


def rules_from_bundle(bundle: Bundle) -> tuple[Rule, ...]:
    """archgw ``ratelimits`` (prompt tokens) plus ``gateway.request_limits``."""
    rules: list[Rule] = []
    for i, rl in enumerate(bundle.ratelimits):
        limit = rl.get("limit") or {}
        selector = rl.get("selector") or {}
        rules.append(
            Rule(
                kind="tokens",
                limit=int(limit.get("tokens", 0)),
                window_s=float(rl.get("window_s") or UNIT_SECONDS[str(limit.get("unit", "minute"))]),
                model=rl.get("model") or None,
                header=(str(selector["key"]).lower() if selector.get("key") else None),
                value=(str(selector["value"]) if selector.get("value") is not None else None),
                origin=f"ratelimits[{i}]",
            )
        )
    gateway = bundle.extensions.get("gateway") or {}
    for i, rl in enumerate(gateway.get("request_limits") or []):
        kind = "requests" if "requests" in rl else "tokens"
        selector = rl.get("selector") or {}
        rules.append(
            Rule(
                kind=kind,
                limit=int(rl[kind]),
                window_s=float(UNIT_SECONDS[str(rl.get("unit", "minute"))]),
                model=rl.get("model") or None,
                header=(str(selector["key"]).lower() if selector.get("key") else None),
                value=(str(selector["value"]) if selector.get("value") is not None else None),
                gateway_key=rl.get("gateway_key") or None,
                origin=f"gateway.request_limits[{i}]",
            )
        )
    return tuple(rules)


def _model_matches(rule_model: str, requested: str | None, bundle: Bundle | None) -> bool:
    if requested is None:
        return False
    if rule_model == requested:
        return True
    if bundle is None:
        return False
    a, b = bundle.resolve_model(rule_model), bundle.resolve_model(requested)
    return a is not None and b is not None and a.provider.name == b.provider.name


def bucket_key(rule: Rule, info: RequestInfo, bundle: Bundle | None = None) -> str | None:
    """The bucket this request charges under ``rule``, or None when the rule does not apply."""
    if rule.model is not None and not _model_matches(rule.model, info.model, bundle):
        return None
    parts = [rule.rule_id]
    if rule.header is not None:
        got = info.headers.get(rule.header)
        if got is None or (rule.value not in (None, "*") and got != rule.value):
            return None
        parts.append(hashlib.sha256(got.encode("utf-8", "surrogateescape")).hexdigest()[:16] if rule.value == "*" else "")
    if rule.gateway_key is not None:
        if info.gateway_key is None or (rule.gateway_key != "*" and info.gateway_key != rule.gateway_key):
            return None
        parts.append(info.gateway_key)
    return "archc:rl:" + ":".join(parts)


