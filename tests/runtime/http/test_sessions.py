"""The per-session status store and its one-line rendering."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.app import create_app
from runtime.router.cache import CachedRouter
from runtime.router.decision import Decision
from runtime.http.sessions import SessionStore, valid_session_id
from runtime.settings import Settings
from tests.support.app_support import MESSAGES, Recorder, ScriptedRouter
from tests.support.gateway import bundle_dict, provider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def record(store: SessionStore, sid: str, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "route": "code_generation",
        "fallback": None,
        "provider": "openai",
        "model": "gpt-5",
        "router_ms": 480.25,
        "cache_hit": False,
        "router_ran": True,
        "main": True,
    }
    fields.update(overrides)
    return store.record(sid, **fields)


def test_last_decision_and_counters() -> None:
    store = SessionStore(4, clock=Clock())
    record(store, "s1")
    record(store, "s1", router_ms=0.02, cache_hit=True)
    status = record(store, "s1", router_ms=0.03, cache_hit=True)
    assert status is store.get("s1")
    assert (status.route, status.provider, status.model, status.cache_hit) == ("code_generation", "openai", "gpt-5", True)
    assert (status.requests, status.router_runs, status.cache_hits) == (3, 1, 2)
    assert status.at == 1003.0


def test_side_requests_do_not_replace_the_main_decision() -> None:
    store = SessionStore(4)
    record(store, "s1")
    status = record(store, "s1", route=None, fallback="other", model="claude-haiku-4-5", provider="anthropic", main=False)
    assert (status.route, status.model, status.requests) == ("code_generation", "gpt-5", 2)
    # Before any main request, a side request is all we know.
    side = record(store, "s2", route=None, fallback="other", main=False)
    assert side.fallback == "other"
    assert record(store, "s2").route == "code_generation"


def test_bounded_lru() -> None:
    store = SessionStore(2)
    record(store, "a")
    record(store, "b")
    record(store, "a")  # "a" is now the most recently updated
    record(store, "c")
    assert len(store) == 2
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None


@pytest.mark.parametrize("sid", [None, "", "x" * 129, "has space", "new\nline", "ünïcode"])
def test_invalid_session_ids_are_ignored(sid: str | None) -> None:
    store = SessionStore(2)
    assert not valid_session_id(sid)
    assert record(store, sid) is None  # type: ignore[arg-type]
    assert len(store) == 0


def test_no_prompt_text_is_stored() -> None:
    store = SessionStore(2)
    status = record(store, "7f9c0d1e-1111-4222-8333-944445555666")
    assert set(status.to_dict()) == {
        "session_id", "route", "fallback", "provider", "model", "router_ms", "cache_hit", "main", "at",
        "requests", "router_runs", "cache_hits",
    }


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SessionStore(0)


# -- the gateway side: recorded per x-claude-code-session-id, served at /v1/arch/sessions/{id} ------


def test_gateway_records_and_serves_session_status() -> None:
    up = "http://up.test/v1/chat/completions"
    bundle = seal(bundle_dict(
        [provider("openai/gpt-default", up, default=True), provider("openai/gpt-gen", up)],
        routes=[("code_generation", "writing code", "openai/gpt-gen")],
        router={"model": "tiny", "prompt": "{conversation}", "route_names": ["code_generation"], "template_sha256": "x"},
    ))
    inner = ScriptedRouter(Decision(route="code_generation", router_ms=480.0, confidence=0.9))
    router = CachedRouter(inner, bundle_digest=bundle.digest, size=8)
    app = create_app(bundle, pool=Recorder().pool(), router=router, settings=Settings())
    sid = "0b7e3f9a-5c1d-4e2f-8a6b-3c4d5e6f7a8b"
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
    turn = {**MESSAGES, "tools": tools, "messages": [{"role": "user", "content": "write a sort function"}]}
    with TestClient(app) as client:
        assert client.get(f"/v1/arch/sessions/{sid}").status_code == 404
        first = client.post("/v1/messages", json=turn, headers={"x-claude-code-session-id": sid})
        assert first.status_code == 200 and "x-arch-router-cache" not in first.headers
        again = client.post("/v1/messages", json=turn, headers={"x-claude-code-session-id": sid})
        assert again.headers["x-arch-router-cache"] == "hit"
        # A side request without tools (title generation) is counted but does not replace the status.
        client.post("/v1/messages", json={**MESSAGES, "messages": [{"role": "user", "content": "title?"}]},
                    headers={"x-claude-code-session-id": sid})
        status = client.get(f"/v1/arch/sessions/{sid}").json()
        missing = client.get("/v1/arch/sessions/someone-else")
    assert len(inner.calls) == 2  # the first turn once, the side request once
    assert status["route"] == "code_generation" and (status["provider"], status["model"]) == ("openai", "gpt-gen")
    assert status["cache_hit"] is True and status["main"] is True
    assert (status["requests"], status["router_runs"], status["cache_hits"]) == (3, 2, 1)
    assert "write a sort function" not in str(status)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
