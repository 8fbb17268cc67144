"""Decisions shared across replicas (runtime/router/shared.py behind runtime/router/cache.py): two decision
caches on one private redis-server, a Redis that is down, and two `archc serve` replicas whose remote
router is asked once for a five-step agent turn sent to both in turn."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from runtime.router.cache import CachedRouter
from runtime.router.decision import Decision
from runtime.router.shared import SharedDecisions, decision_from, shared_for
from tests.runtime.router.test_e2e_remote_router import CONFIG, router_model
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway

TURN = [{"role": "user", "content": "explain this code: def f(x): return x * 2"}]


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    async def decide(self, messages: Any) -> Decision:
        self.calls += 1
        await asyncio.sleep(0.01)
        return Decision("code understanding", None, 0.93, 10.0, 7, False, {"code understanding": 0.93, "other": 0.07}, 300, '{"route": "code understanding"}')

    async def aclose(self) -> None:
        return None


def test_a_replica_reuses_the_decision_another_made(redis_url: str) -> None:
    async def scenario() -> tuple[list[Decision], list[int], list[CachedRouter]]:
        inners = [Counting(), Counting()]
        replicas = [CachedRouter(inner, bundle_digest="sha256:b1", shared=SharedDecisions(redis_url)) for inner in inners]
        first = await replicas[0].decide(TURN)
        for _ in range(50):  # the write goes behind the answer
            if replicas[0]._writes:
                await asyncio.sleep(0.01)
        second = await replicas[1].decide(TURN)
        third = await replicas[1].decide(TURN)  # now in replica 1's own cache
        other_bundle = CachedRouter(Counting(), bundle_digest="sha256:b2", shared=SharedDecisions(redis_url))
        fourth = await other_bundle.decide(TURN)  # another bundle: another key
        for r in [*replicas, other_bundle]:
            await r.aclose()
        return [first, second, third, fourth], [i.calls for i in inners] + [other_bundle.inner.calls], replicas

    (first, second, third, fourth), calls, replicas = asyncio.run(scenario())
    assert calls == [1, 0, 1]
    assert (first.cache_hit, second.cache_hit, third.cache_hit, fourth.cache_hit) == (False, True, True, False)
    assert second.route == first.route and second.confidence == first.confidence and second.probabilities == first.probabilities
    assert second.router_ms < first.router_ms
    assert replicas[1].stats()["shared_hits"] == 1 and replicas[1].stats()["misses"] == 0


def test_a_redis_that_is_down_leaves_each_replica_its_own_cache(dead_redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    errors: list[int] = []

    async def scenario() -> list[Decision]:
        inner = Counting()
        shared = SharedDecisions(dead_redis_url, timeout_s=0.2, on_error=lambda: errors.append(1))
        router = CachedRouter(inner, bundle_digest="sha256:b1", shared=shared)
        out = [await router.decide(TURN), await router.decide(TURN)]
        await asyncio.sleep(0.3)  # the failed write behind the answer
        await router.aclose()
        assert inner.calls == 1
        return out

    with caplog.at_level(logging.WARNING, logger="archc.router"):
        first, second = asyncio.run(scenario())
    assert first.route == second.route == "code understanding" and second.cache_hit
    assert len(errors) == 2  # the read before deciding, the write after
    warnings = [r.getMessage() for r in caplog.records if "shared decision cache" in r.getMessage()]
    assert len(warnings) == 1 and "decides on its own" in warnings[0]  # not once per failure


def test_what_is_read_back_must_be_a_decision() -> None:
    assert decision_from({"route": "a", "confidence": 0.5}).route == "a"
    for bad in ({"route": 3}, {"route": None, "probabilities": []}, {"fallback": {"x": 1}}):
        with pytest.raises(ValueError):
            decision_from(bad)
    assert shared_for({}) is None and shared_for({"decision_cache": {"url": "memory://"}}) is None


@pytest.mark.e2e
def test_two_replicas_ask_the_router_once_for_an_agent_turn(redis_url: str, tmp_path: Path,
                                                          start_gateway: Callable[..., Gateway]) -> None:
    """A five-step agent turn (the user's message, then tool calls and results the router's selection
    drops) sent to two replicas in turn: with the shared cache the router server is asked once; without it,
    once per replica."""
    steps = [[{"role": "user", "content": "explain this code: def f(x): return x * 2"}]]
    for n in range(4):
        steps.append([*steps[-1], {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{n}", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"c{n}", "content": f"result {n}"}])
    counts = {}
    for shared in (True, False):
        with FakeUpstream(default=router_model) as router, FakeUpstream() as llm:
            config = tmp_path / f"replicas-{shared}.yaml"
            text = CONFIG.format(router=router.url, llm=llm.url)
            if shared:
                text += f"gateway:\n  decision_cache: {{url: '{redis_url}', ttl_s: 600}}\n"
            config.write_text(text, encoding="utf-8")
            replicas = [start_gateway(config), start_gateway(config)]
            routes = []
            for i, messages in enumerate(steps):
                r = httpx.post(replicas[i % 2].url + "/v1/chat/completions", json={"model": "none", "messages": messages}, timeout=20)
                assert r.status_code == 200, r.text
                routes.append(r.headers["x-arch-route"])
            assert routes == ["code understanding"] * 5
            counts[shared] = len(router.requests)
            assert all(json.loads(q.body["messages"][0]["content"].split("<conversation>\n")[1].split("\n</conversation>")[0])
                       == steps[0] for q in router.requests)
            for gw in replicas:
                gw.close()
    assert counts == {True: 1, False: 2}
