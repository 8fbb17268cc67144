"""The router decision cache: exact keys, LRU bound, what is and is not stored, hooks."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.bundle import seal
from runtime.router.cache import CachedRouter, cache_key, cacheable
from runtime.router.prompt import select_conversation
from runtime.router.decision import Decision
from tests.support import tiny_models
from tests.support.claude_fixtures import GENERATE_INTENT
from tests.support.gateway import Gateway, write_bundle

DIGEST = "sha256:" + "a" * 64


class CountingRouter:
    """An inner RouterService that answers from a table and records every input it decided on."""

    def __init__(self, answers: Mapping[str, Decision] | None = None, *, default: Decision | None = None, delay: float = 0.0) -> None:
        self.answers = dict(answers or {})
        self.default = default or Decision(route="code_generation", confidence=0.9, router_ms=480.0, tokens=3)
        self.delay = delay
        self.calls: list[list[dict[str, Any]]] = []
        self.closed = False

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        items = messages if isinstance(messages, list) else []
        self.calls.append([dict(m) for m in items if isinstance(m, Mapping)])
        if self.delay:
            await asyncio.sleep(self.delay)
        last = next((m.get("content") for m in reversed(self.calls[-1]) if m.get("role") == "user"), "")
        return self.answers.get(last if isinstance(last, str) else "", self.default)

    async def aclose(self) -> None:
        self.closed = True


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def turn(user: str, *continuations: int) -> list[dict[str, Any]]:
    """A Claude Code style agent turn: the user's message, then N tool call/result pairs."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are Claude Code."}, {"role": "user", "content": user}]
    for i in range(continuations[0] if continuations else 0):
        call = {"id": f"call_{i}", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\": \"ls\"}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": f"result {i}"})
    return messages


def test_agent_turn_continuations_are_hits() -> None:
    inner = CountingRouter()
    router = CachedRouter(inner, bundle_digest=DIGEST, size=8)

    async def scenario() -> list[Decision]:
        return [await router.decide(turn("write a parser", n)) for n in range(5)]

    decisions = run(scenario())
    assert len(inner.calls) == 1
    assert [d.cache_hit for d in decisions] == [False, True, True, True, True]
    assert {d.route for d in decisions} == {"code_generation"}
    assert decisions[0].router_ms == 480.0
    # A hit reports the lookup's own time, not the stored inference time.
    assert all(d.router_ms < 50.0 for d in decisions[1:])
    assert all(d.confidence == 0.9 and d.tokens == 3 for d in decisions)
    assert (router.hits, router.misses) == (4, 1)


def test_key_is_the_selected_conversation() -> None:
    # The key is exactly what selection keeps: tool traffic and system prompts do not change it,
    # a new user message does, and so does a different bundle.
    a = cache_key(DIGEST, select_conversation(turn("explain this code", 0)))
    assert a == cache_key(DIGEST, select_conversation(turn("explain this code", 3)))
    assert a != cache_key(DIGEST, select_conversation(turn("explain this code!", 0)))
    assert a != cache_key("sha256:" + "b" * 64, select_conversation(turn("explain this code", 0)))
    with_reply = turn("explain this code", 1) + [{"role": "assistant", "content": "It parses."}]
    assert a != cache_key(DIGEST, select_conversation(with_reply))


def test_different_inputs_decide_separately() -> None:
    inner = CountingRouter({"explain": Decision(route="code_understanding"), "write": Decision(route="code_generation")})
    router = CachedRouter(inner, bundle_digest=DIGEST, size=8)

    async def scenario() -> list[Decision]:
        return [await router.decide(turn(text)) for text in ("explain", "write", "explain", "write")]

    decisions = run(scenario())
    assert [d.route for d in decisions] == ["code_understanding", "code_generation"] * 2
    assert [d.cache_hit for d in decisions] == [False, False, True, True]
    assert len(inner.calls) == 2


def test_lru_bound_and_eviction_order() -> None:
    inner = CountingRouter()
    router = CachedRouter(inner, bundle_digest=DIGEST, size=2)

    async def scenario() -> None:
        await router.decide(turn("one"))
        await router.decide(turn("two"))
        await router.decide(turn("one"))  # hit: "one" becomes most recent
        await router.decide(turn("three"))  # evicts "two"
        assert len(router) == 2
        await router.decide(turn("one"))  # still cached
        await router.decide(turn("two"))  # decided again

    run(scenario())
    firsts = [next(m["content"] for m in call if m["role"] == "user") for call in inner.calls]
    assert firsts == ["one", "two", "three", "two"]
    assert router.stats() == {"size": 2, "capacity": 2, "hits": 2, "shared_hits": 0, "misses": 4, "evictions": 2}


@pytest.mark.parametrize(
    ("fallback", "stored"),
    [("timeout", False), ("error", False), ("other", True), ("no_match", True), ("malformed", True), ("low_confidence", True), (None, True)],
)
def test_only_deterministic_decisions_are_stored(fallback: str | None, stored: bool) -> None:
    decision = Decision(route=None if fallback else "code_generation", fallback=fallback, router_ms=1500.0)
    assert cacheable(decision) is stored
    inner = CountingRouter(default=decision)
    router = CachedRouter(inner, bundle_digest=DIGEST, size=4)

    async def scenario() -> list[Decision]:
        return [await router.decide(turn("hello")) for _ in range(2)]

    first, second = run(scenario())
    assert len(inner.calls) == (1 if stored else 2)
    assert second.cache_hit is stored
    assert second.fallback == fallback and first.fallback == fallback


def test_lookup_hook_sees_hits_and_misses() -> None:
    seen: list[bool] = []
    router = CachedRouter(CountingRouter(), bundle_digest=DIGEST, size=4, on_lookup=seen.append)

    async def scenario() -> None:
        for n in range(3):
            await router.decide(turn("hello", n))
        await router.decide(turn("bye"))

    run(scenario())
    assert seen == [False, True, True, False]


def test_concurrent_identical_requests_share_one_inference() -> None:
    inner = CountingRouter(delay=0.05)
    router = CachedRouter(inner, bundle_digest=DIGEST, size=4)

    async def scenario() -> list[Decision]:
        return list(await asyncio.gather(*(router.decide(turn("same", n)) for n in range(4))))

    decisions = run(scenario())
    assert len(inner.calls) == 1
    assert sorted(d.cache_hit for d in decisions) == [False, True, True, True]
    assert {d.route for d in decisions} == {"code_generation"}


def test_cancelled_first_caller_does_not_strand_waiters() -> None:
    inner = CountingRouter(delay=0.05)
    router = CachedRouter(inner, bundle_digest=DIGEST, size=4)

    async def scenario() -> Decision:
        first = asyncio.create_task(router.decide(turn("same")))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(router.decide(turn("same", 1)))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    decision = run(scenario())
    assert decision.route == "code_generation"
    assert len(inner.calls) == 2  # the waiter ran the router itself


def test_non_messages_are_keyed_as_selection_sees_them() -> None:
    inner = CountingRouter()
    router = CachedRouter(inner, bundle_digest=DIGEST, size=4)
    weird: Any = [{"role": "user", "content": "x"}, 42]

    async def scenario() -> None:
        await router.decide(weird)
        await router.decide(weird)

    run(scenario())
    # Selection skips what is not a message, so this is keyed like [{"role":"user","content":"x"}].
    assert len(inner.calls) == 1
    assert router.key_for(weird) == router.key_for([{"role": "user", "content": "x"}])


def test_unkeyable_input_bypasses_the_cache() -> None:
    inner = CountingRouter()
    router = CachedRouter(inner, bundle_digest=DIGEST, size=4)
    assert router.key_for(None) is None  # type: ignore[arg-type]

    async def scenario() -> None:
        await router.decide(None)  # type: ignore[arg-type]
        await router.decide(None)  # type: ignore[arg-type]

    run(scenario())
    assert len(inner.calls) == 2 and router.stats()["misses"] == 0  # each went straight to the router


def test_aclose_closes_inner_and_drops_entries() -> None:
    inner = CountingRouter()
    router = CachedRouter(inner, bundle_digest=DIGEST, size=4)

    async def scenario() -> None:
        await router.decide(turn("hello"))
        await router.aclose()

    run(scenario())
    assert inner.closed and len(router) == 0


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CachedRouter(CountingRouter(), bundle_digest=DIGEST, size=0)


# -- through the gateway: a bundle reload starts a fresh cache ----------------------------------------------


@pytest.mark.e2e
def test_bundle_reload_starts_a_fresh_cache(tmp_path: Path, branching_router_model: Path,
                                            start_gateway: Callable[..., Gateway]) -> None:
    first = seal(tiny_models.bundle_dict(model_dir_hint="branching"))
    path = write_bundle(tmp_path, first)
    gw = start_gateway(path, args=["--model-dir", str(branching_router_model)])
    body = {"model": "openai/default-model", "messages": [{"role": "user", "content": GENERATE_INTENT}]}

    def route() -> dict[str, Any]:
        r = httpx.post(gw.url + "/v1/route", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    assert [(d["route"], d["cache_hit"]) for d in (route(), route())] == [("code_generation", False), ("code_generation", True)]

    second = seal({**tiny_models.bundle_dict(model_dir_hint="branching"), "routing": {"timeout_ms": 2500}})
    assert second.digest != first.digest
    write_bundle(tmp_path, second)
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while httpx.get(gw.url + "/readyz", timeout=5).json().get("bundle") != second.digest:
        assert time.monotonic() < deadline, "the gateway did not load the new bundle"
        time.sleep(0.1)
    after = route()
    assert (after["route"], after["cache_hit"], after["bundle"]) == ("code_generation", False, second.digest)
    assert route()["cache_hit"] is True


# -- exactness, as a property: what an agent loop adds never changes the key; a new intent does ----------

_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80).filter(str.strip)
_tool_traffic = st.lists(st.tuples(st.sampled_from(["Bash", "Read", "Edit"]), _text), max_size=6)


@given(first=_text, traffic=_tool_traffic, system=_text, later=_text)
@settings(max_examples=60, deadline=None)
def test_agent_loop_traffic_never_changes_the_key(first: str, traffic: list[tuple[str, str]], system: str,
                                                  later: str) -> None:
    start = [{"role": "system", "content": system}, {"role": "user", "content": first}]
    loop = list(start)
    for i, (tool, result) in enumerate(traffic):
        call = {"id": f"c{i}", "type": "function", "function": {"name": tool, "arguments": "{}"}}
        loop.append({"role": "assistant", "content": None, "tool_calls": [call]})
        loop.append({"role": "tool", "tool_call_id": f"c{i}", "content": result})
        loop.append({"role": "system", "content": system + " (reminder)"})  # mid-conversation system turns
    key = cache_key(DIGEST, select_conversation(start))
    assert cache_key(DIGEST, select_conversation(loop)) == key
    # A new user message is a new intent: a new key (the turn it starts is decided again).
    assert cache_key(DIGEST, select_conversation([*loop, {"role": "user", "content": later}])) != key
