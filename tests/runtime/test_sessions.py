"""The per-session status store and its one-line rendering."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.sessions import SessionStore, format_status, valid_session_id


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


def test_format_status() -> None:
    hit = {"route": "code_generation", "provider": "openai", "model": "gpt-5", "router_ms": 0.04, "cache_hit": True}
    assert format_status(hit) == "code_generation → openai/gpt-5 (0.0 ms, cache hit)"
    miss = {**hit, "router_ms": 507.4, "cache_hit": False}
    assert format_status(miss) == "code_generation → openai/gpt-5 (507 ms, cache miss)"
    fallback = {"route": None, "fallback": "other", "provider": "anthropic", "model": "claude-sonnet-4-5", "router_ms": 3.0, "cache_hit": False}
    assert format_status(fallback) == "fallback:other → anthropic/claude-sonnet-4-5 (3.0 ms, cache miss)"
    # A model id that already carries its provider prefix is not doubled.
    assert format_status({**hit, "model": "openai/gpt-5"}).startswith("code_generation → openai/gpt-5 (")


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SessionStore(0)
