"""runtime/decide/budget.py: Plano's routing budget, as arithmetic on a session's pin."""

from __future__ import annotations

import pytest

from runtime.decide.affinity import Pin, SessionPolicy
from runtime.decide.budget import BudgetPolicy, gate, parse_pct

# USD per million input tokens: (input, cache_read or None)
RATES = {"a": (3.0, 0.3), "pricey": (15.0, None), "near": (0.35, None), "cheap": (0.1, None)}
POLICY = BudgetPolicy(20)
TOKENS = 100_000  # 0.1 million


def test_a_switch_is_weighed_against_the_never_switch_baseline() -> None:
    start = Pin("a", "r")  # the session's first turn pinned it: no totals yet
    verdict, pin = gate(start, "pricey", TOKENS, RATES, POLICY)
    # baseline: 0.1 M tokens read from cache on a (0.3) = 0.03; the switch: 0.1 x (15 - 0.3) = 1.47 > 20% of it
    assert (verdict.decision, verdict.reason) == ("retained", "over_budget")
    assert verdict.cost_usd == pytest.approx(1.47) and verdict.ceiling_usd == pytest.approx(0.006)
    assert (pin.provider, pin.default, pin.spend, pin.switches) == ("a", "a", 0.0, 0) and pin.baseline == pytest.approx(0.03)
    verdict, pin = gate(pin, "near", TOKENS, RATES, POLICY)  # 0.1 x (0.35 - 0.3) = 0.005 <= 20% of 0.06
    assert (verdict.decision, verdict.reason, verdict.switched) == ("allowed", "within_budget", True)
    assert pin.spend == pytest.approx(0.005) and pin.switches == 1 and pin.default == "a"
    verdict, pin = gate(replace_provider(pin, "near"), "a", TOKENS, RATES, POLICY)  # back: 0.1 x (3 - 0.035) > 0.018 - 0.005
    assert (verdict.decision, verdict.reason) == ("retained", "over_budget") and pin.baseline == pytest.approx(0.09)


def test_once_spent_the_budget_refuses_what_it_allowed_before() -> None:
    tight = BudgetPolicy(10)
    pin = Pin("a", "r", "a", baseline=0.03, spend=0.0)
    allowed, pin = gate(pin, "near", TOKENS, RATES, tight)  # 0.005 within 10% of 0.06
    pin = replace_provider(pin, "a")  # served on a again (say, a later pick)
    refused, _ = gate(pin, "near", TOKENS, RATES, tight)  # 0.005 + 0.005 > 10% of 0.09
    assert allowed.reason == "within_budget" and (refused.decision, refused.reason) == ("retained", "over_budget")
    generous, _ = gate(pin, "near", TOKENS, RATES, tight, pct=100)  # the request's own share
    assert generous.reason == "within_budget"


def test_same_model_cheaper_or_unpriced() -> None:
    pin = Pin("a", "r")
    assert gate(pin, "a", TOKENS, RATES, POLICY)[0].header() == "allowed same_anchor"
    free, after = gate(Pin("pricey", "r"), "cheap", TOKENS, RATES, POLICY)  # 0.1 uncached < 1.5 cached (discounted 15)
    assert (free.reason, after.spend, after.switches) == ("free", 0.0, 1) and free.cost_usd < 0
    unknown, _ = gate(pin, "mystery", TOKENS, RATES, POLICY)
    assert (unknown.decision, unknown.reason) == ("allowed", "no_pricing")


def test_the_policy_and_the_header_value() -> None:
    policy = SessionPolicy.from_extensions({"sessions": {"budget": {"max_switch_spend_pct": 15, "cache_read_discount": 0.25}}})
    assert policy is not None and policy.budget == BudgetPolicy(15.0, 0.25) and not policy.affinity
    assert SessionPolicy.from_extensions({"sessions": {"budget": {"nope": 1}}}) is None
    assert [parse_pct(v) for v in ("20", " 7.5 ", "100%", "0", "-1", "101", "lots", "nan")] == [20.0, 7.5, 100.0, 0.0, None, None, None, None]


def replace_provider(pin: Pin, provider: str) -> Pin:
    return Pin(provider, pin.route, pin.default, pin.baseline, pin.spend, pin.switches)
