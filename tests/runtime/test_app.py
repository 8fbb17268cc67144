"""create_app: the lifespan owns state, readiness, per-app metrics, routing headers from the router."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.app import create_app
from runtime.router.decision import Decision
from runtime.settings import Settings
from tests.support.app_support import CHAT, Recorder, ScriptedRouter
from tests.support.gateway import bundle_dict, provider

OAI = "http://up.test/v1/chat/completions"
ANT = "http://up.test/v1/messages"


def _bundle(*, routes=True, bypass=False):
    return seal(bundle_dict(
        [provider("openai/gpt-4o", OAI, default=True), provider("openai/gpt-4o-mini", OAI),
         provider("anthropic/claude-x", ANT, wire="anthropic_messages")],
        aliases={"arch.fast.v1": "openai/gpt-4o-mini"},
        routes=[("code", "writing code", "anthropic/claude-x")] if routes else [],
        routing={"explicit_model_bypass": bypass},
        router={"model": "katanemo/Arch-Router-1.5B", "prompt": "{conversation}", "route_names": ["code"],
                "template_sha256": "x"} if routes else None,
    ))


def _client(bundle, router=None, recorder=None, **settings):
    recorder = recorder or Recorder()
    app = create_app(bundle, pool=recorder.pool(), router=router, settings=Settings(**settings))
    return TestClient(app), recorder


def test_health_ready_and_lifespan_state():
    router = ScriptedRouter(Decision(route=None, fallback="other"))
    client, _ = _client(_bundle(), router)
    with client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["bundle"] == _bundle().digest and ready["router"] == "ScriptedRouter"
    assert not router.closed  # injected: the caller owns it


def test_matched_route_overrides_requested_model_and_sets_headers():
    router = ScriptedRouter(Decision(route="code", router_ms=3.25, cache_hit=True, confidence=0.9))
    client, rec = _client(_bundle(), router)
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "arch.fast.v1"})
    assert r.status_code == 200
    h = r.headers
    assert (h["x-arch-route"], h["x-arch-why"], h["x-arch-target"], h["x-arch-provider"], h["x-arch-model"]) == \
        ("code", "route", "anthropic/claude-x", "anthropic", "claude-x")
    assert h["x-arch-router-ms"] == "3.25" and h["x-arch-router-cache"] == "hit" and "x-arch-fallback" not in h
    assert h["x-arch-bundle"] == _bundle().digest
    assert router.calls == [[{"role": "user", "content": "hi"}]]
    assert str(rec.requests[0].url) == ANT and rec.bodies[0]["model"] == "claude-x"
    assert r.json()["choices"][0]["message"]["content"] == "hello"


def test_fallback_uses_requested_alias_and_says_why():
    client, rec = _client(_bundle(), ScriptedRouter(Decision(route=None, fallback="low_confidence", router_ms=1.0)))
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "arch.fast.v1"})
    assert (r.headers["x-arch-route"], r.headers["x-arch-fallback"], r.headers["x-arch-why"]) == ("none", "low_confidence", "alias")
    assert "x-arch-router-cache" not in r.headers
    assert rec.bodies[0]["model"] == "gpt-4o-mini"


def test_bypass_skips_router_for_explicit_models():
    router = ScriptedRouter(Decision(route="code"))
    client, rec = _client(_bundle(bypass=True), router)
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "openai/gpt-4o"})
        r2 = client.post("/v1/chat/completions", json={**CHAT, "model": "who-knows"})
    assert r.headers["x-arch-why"] == "literal" and r.headers["x-arch-router-ms"] == "0.00"
    assert r2.headers["x-arch-route"] == "code"
    assert len(router.calls) == 1


def test_metrics_use_a_registry_per_app():
    bundle = _bundle(routes=False)
    c1, _ = _client(bundle)
    c2, _ = _client(bundle)
    with c1, c2:
        for _ in range(3):
            assert c1.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert c2.post("/v1/chat/completions", json=CHAT).status_code == 200
        m1, m2 = c1.get("/metrics").text, c2.get("/metrics").text
    line = 'archc_requests_total{endpoint="chat_completions",provider="openai/gpt-4o",route="none",status="200"}'
    assert f"{line} 3.0" in m1 and f"{line} 1.0" in m2
    assert 'archc_tokens_total{direction="in",provider="openai/gpt-4o"} 9.0' in m1


def test_router_decisions_are_counted():
    client, _ = _client(_bundle(), ScriptedRouter(Decision(route="code", router_ms=2)))
    with client:
        client.post("/v1/chat/completions", json=CHAT)
        text = client.get("/metrics").text
    assert 'archc_router_decisions_total{cache="miss",fallback="",route="code"} 1.0' in text


@pytest.mark.parametrize("path, method, status, shape", [
    ("/nope", "get", 404, "error"), ("/v1/messages/nope", "post", 404, "type"), ("/v1/chat/completions", "get", 405, "error")])
def test_unknown_paths_answer_json_in_the_paths_format(path, method, status, shape):
    client, _ = _client(_bundle(routes=False))
    with client:
        r = getattr(client, method)(path)
    assert r.status_code == status and shape in r.json()


def test_lifespan_builds_and_closes_its_own_pool_and_router(fake_upstream):
    """No injected pool: the lifespan builds runtime/upstream/http1.py's pool, uses it, and closes it (an
    unclosed socket would surface as a ResourceWarning, an error here)."""
    bundle = seal(bundle_dict([provider("openai/gpt-4o", fake_upstream.openai_endpoint(), default=True)]))
    with TestClient(create_app(bundle, settings=Settings())) as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        s = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        ready = client.get("/readyz").json()
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"
    assert s.status_code == 200 and s.text.rstrip().endswith("data: [DONE]")
    assert ready["router"] == "NullRouter" and ready["router_reason"] == "no_routes"
    assert len(fake_upstream.requests) == 2
