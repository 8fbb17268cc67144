"""Endpoints in process (MockTransport upstream): passthrough, translation pairs, Azure, echo, /v1/route, /v1/models."""

from __future__ import annotations

import json

import httpx
from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.app import create_app
from runtime.router.decision import Decision
from runtime.settings import Settings
from tests.support.app_support import CHAT, MESSAGES, Recorder, ScriptedRouter
from tests.support.gateway import bundle_dict, provider

OAI = "http://up.test/v1/chat/completions"
ANT = "http://up.test/v1/messages"
AZURE = "http://az.test/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"


def _bundle(**kw):
    return seal(bundle_dict([
        provider("openai/gpt-4o", OAI, auth="bearer", key_env="OPENAI_API_KEY", default=True),
        provider("anthropic/claude-x", ANT, wire="anthropic_messages", auth="x-api-key", key_env="ANTHROPIC_API_KEY"),
        provider("azure_openai/my-gpt", AZURE, auth="api-key", key_env="AZURE_API_KEY"),
        provider("echo/demo", "echo://local"),
        provider("groq/llama", OAI, auth="bearer", key_env="GROQ_API_KEY"),
    ], aliases={"arch.echo.v1": "echo/demo"}, **kw))


ENV = {"OPENAI_API_KEY": "sk-oai", "ANTHROPIC_API_KEY": "sk-ant", "AZURE_API_KEY": "az-key"}


def _client(bundle=None, recorder=None, router=None, env=ENV, **settings):
    recorder = recorder or Recorder()
    app = create_app(bundle or _bundle(), pool=recorder.pool(), router=router, settings=Settings(env=env, **settings))
    return TestClient(app), recorder


def test_same_format_passthrough_keeps_unknown_fields_and_changes_only_model():
    client, rec = _client()
    body = {**CHAT, "model": "gpt-4o", "vendor_field": {"x": [1, 2]}, "temperature": 0.3, "logit_bias": {"50256": -100}}
    with client:
        r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert rec.bodies[0] == {**body, "model": "gpt-4o"}
    assert rec.requests[0].headers["authorization"] == "Bearer sk-oai"
    assert r.json()["usage"]["total_tokens"] == 5


def test_anthropic_passthrough_forwards_beta_header_and_version():
    client, rec = _client()
    body = {**MESSAGES, "model": "anthropic/claude-x", "context_management": {"edits": []}}
    with client:
        r = client.post("/v1/messages?beta=true", json=body, headers={"anthropic-beta": "interleaved-thinking-2025-05-14",
                                                                      "anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "hello"
    sent = rec.requests[0]
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["anthropic-version"] == "2023-06-01" and sent.headers["x-api-key"] == "sk-ant"
    assert rec.bodies[0] == {**body, "model": "claude-x"}


def test_openai_client_to_anthropic_upstream():
    client, rec = _client()
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "anthropic/claude-x",
                                                      "messages": [{"role": "system", "content": "be brief"}, *CHAT["messages"]]})
    assert r.status_code == 200
    assert rec.bodies[0]["system"] == "be brief" and rec.bodies[0]["max_tokens"] == 4096
    out = r.json()
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["content"] == "hello"
    assert out["choices"][0]["finish_reason"] == "stop"


def test_anthropic_client_to_openai_upstream():
    client, rec = _client()
    with client:
        r = client.post("/v1/messages", json={**MESSAGES, "system": "be brief"})
    assert r.status_code == 200
    assert rec.bodies[0]["messages"][0] == {"role": "system", "content": "be brief"}
    assert r.json()["type"] == "message" and r.json()["content"] == [{"type": "text", "text": "hello"}]


def test_azure_deployment_url_api_version_and_api_key_header():
    client, rec = _client()
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "azure_openai/my-gpt"})
    assert r.status_code == 200
    sent = rec.requests[0]
    assert sent.url.path == "/openai/deployments/my-gpt/chat/completions"
    assert sent.url.params["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == "az-key" and "authorization" not in sent.headers


def test_missing_key_is_503_naming_the_variable_in_clients_format():
    client, rec = _client()
    with client:
        r = client.post("/v1/messages", json={**MESSAGES, "model": "groq/llama"})
    assert r.status_code == 503
    err = r.json()
    assert err["type"] == "error" and "GROQ_API_KEY" in err["error"]["message"]
    assert rec.requests == []


def test_echo_provider_answers_in_process_streamed_and_not():
    client, rec = _client()
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "arch.echo.v1"})
        s = client.post("/v1/messages", json={**MESSAGES, "model": "arch.echo.v1", "stream": True})
    assert rec.requests == []
    text = r.json()["choices"][0]["message"]["content"]
    assert "model=echo/demo" in text and "why=alias" in text and "route=none" in text
    assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
    events = [line[7:] for line in s.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    deltas = "".join(json.loads(line[6:])["delta"].get("text", "") for line in s.text.splitlines()
                     if line.startswith("data: ") and '"content_block_delta"' in line)
    assert deltas == text


def test_echo_mode_replaces_providers_without_keys():
    client, rec = _client(env={}, echo=True)
    with client:
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "anthropic/claude-x"})
        ready = client.get("/readyz").json()
    assert r.status_code == 200 and "model=anthropic/claude-x" in r.json()["choices"][0]["message"]["content"]
    assert rec.requests == [] and "anthropic/claude-x" in ready["echo"]


def test_route_endpoint_decides_without_calling_upstream():
    bundle = _bundle(routes=[("code", "writing code", "anthropic/claude-x")],
                     router={"model": "m", "prompt": "{conversation}", "route_names": ["code"], "template_sha256": "x"})
    router = ScriptedRouter(Decision(route="code", router_ms=4.5, confidence=0.8))
    client, rec = _client(bundle, router=router)
    with client:
        r = client.post("/v1/route", json=CHAT)
        a = client.post("/v1/route?format=anthropic", json={**MESSAGES, "system": "s"})
    assert rec.requests == []
    d = r.json()
    assert (d["route"], d["model"], d["provider"], d["upstream_model"], d["why"], d["router_ms"]) == \
        ("code", "anthropic/claude-x", "anthropic", "claude-x", "route", 4.5)
    assert d["bundle"] == bundle.digest and r.headers["x-arch-route"] == "code"
    assert a.status_code == 200 and router.calls[1][0] == {"role": "system", "content": "s"}


def test_route_endpoint_unknown_model_is_404_listing_models():
    client, _ = _client(seal(bundle_dict([provider("openai/gpt-4o", OAI)])))
    with client:
        r = client.post("/v1/route", json={**CHAT, "model": "gpt-9"})
        m = client.post("/v1/messages", json={**MESSAGES, "model": "gpt-9"})
    assert r.status_code == 404 and "gpt-9" in r.json()["error"]["message"] and "openai/gpt-4o" in r.json()["error"]["message"]
    assert m.status_code == 404 and m.json()["error"]["type"] == "not_found_error"


def test_models_lists_aliases_then_providers():
    client, _ = _client()
    with client:
        data = client.get("/v1/models").json()
    ids = [m["id"] for m in data["data"]]
    assert ids[0] == "arch.echo.v1" and "openai/gpt-4o" in ids and "azure_openai/my-gpt" in ids
    assert data["object"] == "list" and data["has_more"] is False and data["data"][0]["type"] == "model"


def test_count_tokens_estimates():
    client, _ = _client()
    with client:
        r = client.post("/v1/messages/count_tokens", json={"model": "x", "messages": [{"role": "user", "content": "a" * 400}]})
    assert r.status_code == 200 and 90 <= r.json()["input_tokens"] <= 130


def test_upstream_error_status_is_kept_and_rendered_for_client():
    def respond(request, body):
        return httpx.Response(429, json={"error": {"message": "slow down", "type": "rate_limit_error"}})

    client, _ = _client(recorder=Recorder(respond))
    with client:
        r = client.post("/v1/messages", json=MESSAGES)
    assert r.status_code == 429
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"
    assert "slow down" in r.json()["error"]["message"]
    assert r.headers["x-arch-target"] == "openai/gpt-4o"
