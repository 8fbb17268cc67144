"""Stored Responses (runtime/http/stored.py): the same behaviour from the memory store and from Redis
(a private redis-server on loopback), then two `archc serve` replicas sharing one Redis store: a
conversation started on one continues on the other, and on a restarted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from runtime.errors import NotFound, ProviderUnavailable
from runtime.http.stored import MemoryResponses, RawResponse, RedisResponses, expand, store_for
from tests.support.fake_upstream import FakeUpstream, openai_text
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = pytest.mark.anyio


def _response(rid: str, text: str) -> dict[str, Any]:
    return {"id": rid, "object": "response", "output": [
        {"type": "message", "id": "msg_" + rid, "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


async def _turn(kept: Any, rid: str, text: str, said: str, previous: str | None = None, **extra: Any) -> dict[str, Any]:
    body = await expand(kept, {"input": said, **({"previous_response_id": previous} if previous else {}), **extra})
    await kept.keep(body, _response(rid, text))
    return body


async def _behaves(store: Any) -> None:
    await _turn(store, "r1", "Paris.", "Capital of France?")
    body = await _turn(store, "r2", "About 2 million.", "Its population?", "r1")
    assert [i["content"] for i in body["input"]] == ["Capital of France?", "Paris.", "Its population?"]
    assert [i["content"] for i in await store.history("r2")] == ["Capital of France?", "Paris.", "Its population?",
                                                                 "About 2 million."]
    await _turn(store, "r2b", "Lyon is second.", "And the second city?", "r1")  # a branch from r1
    assert [i["content"] for i in await store.history("r2b")][-2:] == ["And the second city?", "Lyon is second."]
    assert (await store.get("r2"))["output"][0]["content"][0]["text"] == "About 2 million."
    await _turn(store, "r3", "never kept", "secret", "r2", store=False)
    with pytest.raises(NotFound):
        await store.get("r3")
    assert (await store.delete("r1"))["deleted"] is True
    with pytest.raises(NotFound):
        await store.history("r1")
    with pytest.raises(NotFound):
        await store.delete("r1")
    assert await store.history(None) == []


async def test_memory_store() -> None:
    store = MemoryResponses()
    await _behaves(store)
    assert [i["content"] for i in await store.history("r2")][0] == "Capital of France?"  # r2 keeps its whole history


class _AsReceived:
    """A store given each response as the gateway receives it from a passthrough: its JSON bytes
    (``in_event``: the data of the stream's final event), never parsed on the way in."""

    def __init__(self, store: Any, in_event: bool) -> None:
        self.store = store
        self.in_event = in_event

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def keep(self, body: Any, response: dict[str, Any]) -> None:
        data = {"type": "response.completed", "sequence_number": 7, "response": response} if self.in_event else response
        await self.store.keep(body, RawResponse(response["id"], json.dumps(data, separators=(",", ":")).encode(), self.in_event))


@pytest.mark.parametrize("in_event", [False, True])
async def test_memory_store_keeping_responses_as_received(in_event: bool) -> None:
    await _behaves(_AsReceived(MemoryResponses(), in_event))


@pytest.mark.parametrize("in_event", [False, True])
async def test_redis_store_keeping_responses_as_received(redis_url: str, in_event: bool) -> None:
    store = RedisResponses(redis_url)
    try:
        await _behaves(_AsReceived(store, in_event))
    finally:
        await store.aclose()


@pytest.mark.parametrize("raw", [b'{"type":"response.completed","response":{"id":"bad"', b'{"response":{"id":"other"}}', b"[]"])
async def test_a_kept_response_whose_bytes_do_not_hold_it_reads_as_never_kept(raw: bytes, redis_url: str) -> None:
    """A malformed final event from a passthrough upstream is kept unparsed; read back, it is unknown
    (404, as a response never kept), it is dropped, and a follow-up naming it starts afresh."""
    store = MemoryResponses()
    await store.keep({"input": "hi"}, RawResponse("bad", raw, in_event=True))
    body = {"input": "next", "previous_response_id": "bad"}
    with pytest.raises(NotFound, match="'bad'"):
        await expand(store, body)
    assert "bad" not in store._kept and store.bytes == 0
    await store.keep({"input": "hi"}, RawResponse("bad", raw, in_event=True))
    with pytest.raises(NotFound, match="'bad'"):
        await store.get("bad")
    await store.keep({"input": "hi"}, RawResponse("bad", raw, in_event=True))
    await store.keep(body, _response("after", "ok"))  # its previous cannot be read: this turn stands alone
    assert [i["content"] for i in await store.history("after")] == ["next", "ok"]
    redis = RedisResponses(redis_url)
    try:
        await redis.keep({"input": "hi"}, RawResponse("bad", raw, in_event=True))  # parsed on the way in: not kept
        with pytest.raises(NotFound):
            await redis.get("bad")
    finally:
        await redis.aclose()


async def test_kept_responses_stay_out_of_the_cyclic_gcs_reach() -> None:
    import gc

    store = MemoryResponses()
    await _turn(store, "warm", "x", "y")
    gc.collect()
    before = len(gc.get_objects())
    previous = None
    for i in range(500):
        await _turn(store, f"r{i}", f"answer {i}", f"question {i}", previous)
        previous = f"r{i}"
    gc.collect()
    assert len(gc.get_objects()) - before < 500 * 3  # one record per response (its JSON in bytes), not its dicts and lists
    history = await store.history("r499")
    assert len(history) == 1000 and [i["content"] for i in history[:3]] == ["question 0", "answer 0", "question 1"]
    history[0]["content"] = "changed by a caller"  # each read is a fresh copy: the store is not written through
    assert (await store.history("r499"))[0]["content"] == "question 0"


async def test_memory_store_bounds_count_and_age() -> None:
    now = [0.0]
    store = MemoryResponses(max_responses=2, ttl_s=10, clock=lambda: now[0])
    for rid in ("a", "b", "c"):
        await _turn(store, rid, "ok", "hi")
    with pytest.raises(NotFound):
        await store.get("a")  # the least recently used went first
    now[0] = 11
    with pytest.raises(NotFound):
        await store.history("c")


async def test_redis_store_shared_by_two_instances(redis_url: str) -> None:
    one, two = RedisResponses(redis_url), RedisResponses(redis_url)
    try:
        await _behaves(one)
        assert [i["content"] for i in await two.history("r2")][-1] == "About 2 million."
        await _turn(two, "r4", "Yes.", "Sure?", "r2")
        assert len(await one.history("r4")) == 6
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_store_says_when_part_of_a_chain_is_gone(redis_url: str) -> None:
    store = RedisResponses(redis_url)
    try:
        await _turn(store, "a", "1", "one")
        await _turn(store, "b", "2", "two", "a")
        await store._client.delete(store.PREFIX + "a")  # as if it had expired first
        with pytest.raises(NotFound, match="part of the history"):
            await store.history("b")
    finally:
        await store.aclose()


async def test_redis_records_expire(redis_url: str) -> None:
    import asyncio

    store = RedisResponses(redis_url, ttl_s=1)
    try:
        await _turn(store, "short", "ok", "hi")
        await store.get("short")
        await asyncio.sleep(2.1)
        with pytest.raises(NotFound):
            await store.get("short")
    finally:
        await store.aclose()


async def test_redis_down_is_a_503_not_a_hang(dead_redis_url: str) -> None:
    store = RedisResponses(dead_redis_url, timeout_s=0.3)
    try:
        with pytest.raises(ProviderUnavailable, match="response store"):
            await store.history("r1")
    finally:
        await store.aclose()


async def test_memory_store_bounds_bytes_counting_each_whole_conversation() -> None:
    """A 20 KB answer per turn, 150 KB allowed: each response counts its history too (turn n about 40 + 20n KB),
    so the oldest turns go as the sum passes the bound; the bytes counted always equal the records kept."""
    store = MemoryResponses(max_bytes=150_000)
    previous = None
    for n in range(6):
        await _turn(store, f"t{n}", "x" * 20_000, f"turn {n}", previous)
        previous = f"t{n}"
        assert store.bytes == sum(k.size for k in store._kept.values()) <= 150_000
    kept = list(store._kept)
    assert kept[-1] == "t5" and "t0" not in kept and len(kept) < 6
    assert [i["content"] for i in await store.history("t5")][:2] == ["turn 0", "x" * 20_000]  # t5 keeps its whole history
    sizes = [store._kept[rid].size for rid in kept]
    assert sizes == sorted(sizes) and sizes[-1] > 6 * 20_000  # later turns count their longer histories
    await store.delete("t5")
    assert store.bytes == sum(k.size for k in store._kept.values())
    one = MemoryResponses(max_bytes=1_024)
    await _turn(one, "big", "y" * 5_000, "hi")  # larger than the bound alone: the newest is kept
    assert list(one._kept) == ["big"]


def test_store_for_reads_the_gateway_section() -> None:
    assert isinstance(store_for({}), MemoryResponses)
    assert store_for({"responses_store": {"url": "memory://", "max_responses": 5}}).max_responses == 5
    assert store_for({"responses_store": {"url": "memory://", "max_bytes": 4096}}).max_bytes == 4096


@pytest.mark.e2e
def test_two_replicas_share_stored_responses_through_redis(redis_url: str, tmp_path: Path) -> None:
    with FakeUpstream() as up:
        up.script(openai_text("Paris."), openai_text("About 2 million."), openai_text("Still Paris."))
        ext = {"gateway": {"responses_store": {"url": redis_url}}}
        path = write_bundle(tmp_path, bundle_dict([provider("openai/gpt-4o", up.openai_endpoint(), default=True)], extensions=ext))
        with Gateway(path, args=["--log-level", "warning"]) as a, Gateway(path, args=["--log-level", "warning"]) as b:
            with openai.OpenAI(base_url=a.url + "/v1", api_key="k", max_retries=0) as ca, \
                    openai.OpenAI(base_url=b.url + "/v1", api_key="k", max_retries=0) as cb:
                first = ca.responses.create(model="openai/gpt-4o", input="Capital of France?")
                second = cb.responses.create(model="openai/gpt-4o", input="Its population?", previous_response_id=first.id)
                assert cb.responses.retrieve(first.id).output_text == "Paris."
        with Gateway(path, args=["--log-level", "warning"]) as restarted, \
                openai.OpenAI(base_url=restarted.url + "/v1", api_key="k", max_retries=0) as cr:
            third = cr.responses.create(model="openai/gpt-4o", input="Capital again?", previous_response_id=second.id)
        assert third.output_text == "Still Paris."
        assert [m["content"] for m in up.requests[2].body["messages"]] == [
            "Capital of France?", "Paris.", "Its population?", "About 2 million.", "Capital again?"]
