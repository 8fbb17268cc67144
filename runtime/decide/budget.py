"""Plano 0.4's ``routing.routing_budget``: may a warm session switch away from its model?

Stage: decide (pure arithmetic on a session's pin; no I/O). The router still names a route on every
turn; this gate decides whether to honour a pick that differs from the model the session is warm
on (its anchor), whose provider cache a switch throws away. Prices are per million input tokens
from the cost source (runtime/live/costs.py ``rates``); a cached read costs the catalog's
``cache_read`` price, else ``input`` x ``cache_read_discount``.

Each warm turn grows the session's never-switch baseline by what the turn's context costs read
from cache on the session's first model (``default``). A switch costs the context at the
candidate's uncached rate less what staying would have cost (the anchor's cached rate):
- the router agrees with the anchor: ``same_anchor`` (stay, nothing spent);
- either price unknown: ``no_pricing`` (switch: the gate does not veto on guesswork);
- the switch costs nothing or less: ``free`` (switch, nothing spent);
- the session's switch spend plus this cost stays within ``max_switch_spend_pct`` of its baseline:
  ``within_budget`` (switch, spent);
- otherwise ``over_budget``: the session stays on its anchor (retained).
The promise, as Plano's: a conversation bills at most that share above never switching. A session
whose pin expired is cold: its next turn starts a fresh episode (totals from zero), as Plano's
default ``replenish_on_rebind``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # a session's pin is runtime/decide/affinity.py's (which reads this module's policy)
    from runtime.decide.affinity import Pin

ALLOWED, RETAINED = "allowed", "retained"
Rates = Mapping[str, tuple[float, float | None]]  # model -> (input price, cache_read price or None), USD per million tokens


@dataclass(frozen=True)
class BudgetPolicy:
    max_switch_spend_pct: float
    cache_read_discount: float = 0.1

    @classmethod
    def from_spec(cls, spec: Any) -> "BudgetPolicy | None":
        if not isinstance(spec, dict) or not isinstance(spec.get("max_switch_spend_pct"), (int, float)):
            return None
        discount = spec.get("cache_read_discount")
        return cls(float(spec["max_switch_spend_pct"]), float(discount) if isinstance(discount, (int, float)) else 0.1)


@dataclass(frozen=True)
class Switch:
    """The gate's verdict on one warm turn: ``decision`` allowed or retained, and why; the switch's
    cost, the ceiling it was held to and the session's spend after it (USD), when priced."""

    decision: str
    reason: str
    candidate: str
    cost_usd: float | None = None
    ceiling_usd: float | None = None
    spent_usd: float = 0.0

    @property
    def switched(self) -> bool:
        return self.decision == ALLOWED and self.reason != "same_anchor"

    def header(self) -> str:
        """``x-arch-switch``: the verdict, and the numbers it was made on."""
        text = f"{self.decision} {self.reason}"
        if self.cost_usd is not None:
            text += f"; {self.candidate} costs {self.cost_usd:.6f} USD"
            if self.ceiling_usd is not None:
                text += f", spent {self.spent_usd:.6f} of {self.ceiling_usd:.6f}"
        return text


def cached_rate(rates: Rates, model: str, discount: float) -> float | None:
    price = rates.get(model)
    if price is None:
        return None
    return price[1] if price[1] is not None else price[0] * discount


def gate(pin: Pin, candidate: str, tokens: int, rates: Rates, policy: BudgetPolicy,
         pct: float | None = None) -> tuple[Switch, Pin]:
    """The verdict on serving ``candidate`` (the router's pick) to a warm session pinned by ``pin``,
    for a turn of ``tokens`` context tokens; and the session's pin after it. ``pct``: the request's
    own ``max_switch_spend_pct`` (its header), else the policy's."""
    default = pin.default or pin.provider
    per_million = tokens / 1_000_000
    base = cached_rate(rates, default, policy.cache_read_discount)
    baseline = pin.baseline + (per_million * base if base is not None else 0.0)
    stay = replace(pin, default=default, baseline=baseline)
    if candidate == pin.provider:
        return Switch(ALLOWED, "same_anchor", candidate, spent_usd=pin.spend), stay
    anchor = cached_rate(rates, pin.provider, policy.cache_read_discount)
    fresh = rates.get(candidate)
    moved = replace(stay, switches=pin.switches + 1)  # provider and route: the caller's, from the choice
    if anchor is None or fresh is None:
        return Switch(ALLOWED, "no_pricing", candidate, spent_usd=pin.spend), moved
    cost = per_million * (fresh[0] - anchor)
    if cost <= 0:  # cheaper outright: allowed, and it does not credit the spend back
        return Switch(ALLOWED, "free", candidate, cost, spent_usd=pin.spend), moved
    ceiling = (policy.max_switch_spend_pct if pct is None else pct) / 100 * baseline
    if pin.spend + cost <= ceiling:
        return Switch(ALLOWED, "within_budget", candidate, cost, ceiling, pin.spend + cost), replace(moved, spend=pin.spend + cost)
    return Switch(RETAINED, "over_budget", candidate, cost, ceiling, pin.spend), stay


def parse_pct(value: str) -> float | None:
    """A request's ``x-arch-max-switch-spend-pct`` (or Plano's header): a number from 0 to 100, else None."""
    try:
        pct = float(value.strip().rstrip("%"))
    except ValueError:
        return None
    return pct if 0 <= pct <= 100 else None
