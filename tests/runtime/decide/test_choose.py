"""Routing semantics: alias -> literal -> bare -> router -> requested -> default -> 404."""

from __future__ import annotations

import pytest

from archc.bundle import seal
from runtime.errors import UnknownModel
from runtime.decide.choose import choose, unknown_model, wants_router
from runtime.router.decision import Decision
from tests.support.gateway import bundle_dict, provider

URL = "http://127.0.0.1:9/v1/chat/completions"


def _bundle(*, routes=True, default=True, bypass=False):
    providers = [provider("openai/gpt-4o", URL, default=default), provider("openai/gpt-4o-mini", URL),
                 provider("anthropic/claude-x", URL.replace("chat/completions", "messages"), wire="anthropic_messages")]
    return seal(bundle_dict(providers, aliases={"arch.fast.v1": "openai/gpt-4o-mini"},
                            routes=[("code", "writing code", "anthropic/claude-x")] if routes else [],
                            routing={"explicit_model_bypass": bypass}))


def test_no_routes_uses_requested_model_by_each_kind_of_name():
    b = _bundle(routes=False)
    for name, via, target in [("arch.fast.v1", "alias", "openai/gpt-4o-mini"), ("openai/gpt-4o", "literal", "openai/gpt-4o"),
                              ("claude-x", "bare", "anthropic/claude-x")]:
        res = b.resolve_model(name)
        assert not wants_router(b, res)
        c = choose(b, name, res, None)
        assert (c.provider.name, c.why, c.route, c.fallback, c.router_ran) == (target, via, None, None, False)


def test_unknown_model_without_routes_goes_to_default():
    b = _bundle(routes=False)
    c = choose(b, "gpt-9", b.resolve_model("gpt-9"), None)
    assert (c.provider.name, c.why) == ("openai/gpt-4o", "default")


def test_unknown_model_without_default_is_404_listing_models():
    b = _bundle(routes=False, default=False)
    with pytest.raises(UnknownModel) as info:
        choose(b, "gpt-9", None, None)
    assert info.value.status == 404
    assert "'gpt-9'" in info.value.message and "arch.fast.v1" in info.value.message and "openai/gpt-4o-mini" in info.value.message


def test_archgw_semantics_matched_route_overrides_requested_model():
    b = _bundle()
    res = b.resolve_model("arch.fast.v1")
    assert wants_router(b, res)
    c = choose(b, "arch.fast.v1", res, Decision(route="code", router_ms=12.5, confidence=0.9))
    assert (c.provider.name, c.why, c.route, c.router_ms, c.router_ran) == ("anthropic/claude-x", "route", "code", 12.5, True)


@pytest.mark.parametrize("reason", ["other", "timeout", "no_router_model", "low_confidence"])
def test_router_fallback_uses_requested_model_alias_resolved(reason):
    b = _bundle()
    c = choose(b, "arch.fast.v1", b.resolve_model("arch.fast.v1"), Decision(route=None, fallback=reason))
    assert (c.provider.name, c.why, c.route, c.fallback) == ("openai/gpt-4o-mini", "alias", None, reason)


def test_router_fallback_without_requested_model_uses_default():
    b = _bundle()
    c = choose(b, "claude-opus-4-8", None, Decision(route=None, fallback="other"))
    assert (c.provider.name, c.why, c.fallback) == ("openai/gpt-4o", "default", "other")


def test_router_naming_unknown_route_is_no_match():
    b = _bundle()
    c = choose(b, None, None, Decision(route="nonexistent"))
    assert (c.provider.name, c.fallback) == ("openai/gpt-4o", "no_match")


def test_bypass_lets_explicit_model_skip_router_but_not_unknown_ones():
    b = _bundle(bypass=True)
    assert not wants_router(b, b.resolve_model("openai/gpt-4o"))
    assert not wants_router(b, b.resolve_model("arch.fast.v1"))
    assert wants_router(b, b.resolve_model("some-unknown"))


def test_unknown_model_message_names_missing_request():
    b = _bundle(routes=False, default=False)
    err = unknown_model(b, None)
    assert "no model was requested" in err.message
