"""Stored Responses: what ``previous_response_id`` names, and ``GET``/``DELETE /v1/responses/{id}``.

Stage: http data. The gateway translates every turn, so it must remember every turn, whatever the
upstream's API. Each kept response is a record: the id of the response before it, the items its
turn added (its own input items, then its output as input items), how many items the whole
conversation holds through it, and the response object. ``history(id)`` is the conversation
through ``id``, oldest first (404 when unknown, expired or deleted); ``store: false`` keeps nothing.

Two stores, one interface: ``MemoryResponses`` (this process; bounded by count, least recently used
first, and by age) and ``RedisResponses`` (``gateway.responses_store.url: redis://...``: shared by
every replica, so a follow-up may land on any of them and a restart loses nothing; records expire
after ``ttl_s``; a chain is read in one round trip by a server-side script).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Protocol

import orjson

from runtime.errors import NotFound, ProviderUnavailable
from runtime.wire import json_text
from runtime.wire import openai_responses as orr

DEFAULT_MAX_RESPONSES = 10_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # the memory store's JSON bytes, counted conservatively (MemoryResponses)
DEFAULT_TTL_S = 24 * 3600.0
MAX_CHAIN = 10_000  # turns followed back from one previous_response_id


class ResponseStore(Protocol):
    async def history(self, rid: str | None) -> list[dict[str, Any]]: ...
    async def keep(self, body: Mapping[str, Any], response: "Kept") -> None: ...
    async def get(self, rid: str) -> dict[str, Any]: ...
    async def delete(self, rid: str) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


def _unknown(rid: str, what: str = "previous_response_id: no") -> NotFound:
    return NotFound(f"{what} stored response with id {rid!r} (unknown, expired, deleted, or created with store: false)",
                    code="response_not_found")


async def expand(store: ResponseStore, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``input`` as the whole conversation: the history of its
    ``previous_response_id``, then its own input items (``body`` itself when it names none: a
    Responses upstream gets its input as sent)."""
    if not body.get("previous_response_id"):
        return body
    history = await store.history(body["previous_response_id"])
    return {**body, "input": [*history, *orr.input_items(body)]}


async def input_items(store: ResponseStore, rid: str) -> list[dict[str, Any]]:
    """The items a stored response was generated from, oldest first (``GET /v1/responses/{id}/input_items``):
    its whole conversation (earlier turns included) without its own output; each with an ``id`` (the
    item's own, or one derived from the response id and its place) and its content as parts."""
    items = await store.history(rid)
    response = await store.get(rid)
    inputs = items[: len(items) - len(orr.output_items(response))]
    return [orr.listed_item(item, f"{rid}_{i}") for i, item in enumerate(inputs)]


def _turn(body: Mapping[str, Any], response: dict[str, Any], before: int) -> list[dict[str, Any]]:
    """The items a turn adds: the (expanded) request's input past the ``before`` items of its history, then its output."""
    return [*orr.input_items(dict(body))[before:], *orr.output_items(response)]


class RawResponse:
    """A response to keep as the gateway received it: its id and JSON bytes, either the response
    object or (``in_event``) the data of the stream event that carries it as ``response``. Parsed
    only if it is ever read back: most kept responses never are."""

    __slots__ = ("rid", "raw", "in_event")

    def __init__(self, rid: str, raw: bytes, in_event: bool = False) -> None:
        self.rid = rid
        self.raw = raw
        self.in_event = in_event

    def parsed(self) -> dict[str, Any] | None:
        """The response object, or None when the bytes do not hold one with this id."""
        try:
            value = _loads(self.raw)
        except (ValueError, RecursionError):
            return None
        if self.in_event:
            value = value.get("response") if isinstance(value, dict) else None
        return value if isinstance(value, dict) and value.get("id") == self.rid else None


Kept = dict[str, Any] | RawResponse  # what ``keep`` takes: a parsed response, or its bytes


class _Kept:
    """One kept response, as JSON bytes: out of the cyclic GC's reach (ten thousand kept responses as
    Python objects are millions of objects every full collection walks, while requests wait).

    Until it is first read (``settle``), ``turn`` holds only the turn's input items and ``answer``
    the response as it came (never parsed: a response is kept on every turn and read back on few);
    the first read parses it once and appends its output items to ``turn``."""

    __slots__ = ("previous", "turn", "count", "answer", "settled", "at", "size", "response_size")

    def __init__(self, previous: "_Kept | None", turn: bytes, count: int, answer: RawResponse, at: float, size: int,
                 response_size: int) -> None:
        self.previous = previous  # the response before it (kept alive by this reference when evicted from the table)
        self.turn = turn  # the items this turn added, a JSON array (its inputs only until settled)
        self.count = count  # items in the whole conversation through this turn's items so far
        self.answer = answer
        self.settled = False
        self.at = at
        self.size = size  # the JSON bytes of the whole conversation through this response, and of the response
        self.response_size = response_size  # of the response alone (the next turn's history holds its output items)

    def settle(self) -> bool:
        """Parse the response once and add its output items to the turn; False when its bytes do not
        hold a response (an upstream's malformed final event: as if it had never been kept)."""
        if self.settled:
            return True
        response = self.answer.parsed()
        if response is None:
            return False
        outputs = orr.output_items(response)
        if outputs:
            self.turn = _dumps([*_loads(self.turn), *outputs])
            self.count += len(outputs)
        self.settled = True
        return True

    def items(self) -> list[dict[str, Any]] | None:
        """The whole conversation through this response, oldest first (fresh objects each time);
        None when a response in it cannot be read."""
        chain: list[_Kept] = []
        kept: _Kept | None = self
        while kept is not None and len(chain) < MAX_CHAIN:
            chain.append(kept)
            kept = kept.previous
        out: list[dict[str, Any]] = []
        for kept in reversed(chain):
            if not kept.settle():
                return None
            out += _loads(kept.turn)
        return out


class MemoryResponses:
    """Bounded by count (``max_responses``) and by bytes (``max_bytes``), least recently used first, and
    by age. Each response counts its whole conversation: history shared by the turns of one conversation
    is counted once per turn, so the real memory stays under the bound (a long agent session fills it
    sooner than its size alone would)."""

    def __init__(self, max_responses: int = DEFAULT_MAX_RESPONSES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.bytes = 0  # the sum of the kept records' sizes
        self._kept: OrderedDict[str, _Kept] = OrderedDict()

    def _drop(self, rid: str) -> None:
        self.bytes -= self._kept.pop(rid).size

    def _get(self, rid: str) -> _Kept | None:
        kept = self._kept.get(rid)
        if kept is None:
            return None
        if self.clock() - kept.at > self.ttl_s:
            self._drop(rid)
            return None
        self._kept.move_to_end(rid)
        return kept

    async def history(self, rid: str | None) -> list[dict[str, Any]]:
        if not rid:
            return []
        kept = self._get(rid)
        items = kept.items() if kept is not None else None
        if items is None:
            if kept is not None:  # its response, or one before it, could not be read: forget it
                self._drop(rid)
            raise _unknown(rid)
        return items

    async def keep(self, body: Mapping[str, Any], response: Kept) -> None:
        if body.get("store") is False:
            return
        previous = self._kept.get(body.get("previous_response_id") or "")
        if previous is not None and not previous.settle():
            previous = None
        before = previous.count if previous is not None else 0
        inputs = orr.input_items(body)[before:]
        turn = _dumps(inputs)
        answer = response if isinstance(response, RawResponse) else RawResponse(response["id"], _dumps(response))
        size = len(answer.raw)  # stands for its output items in the conversation too, until they are read
        history = previous.size - previous.response_size if previous is not None else 0
        rid = answer.rid
        if rid in self._kept:
            self._drop(rid)
        kept = self._kept[rid] = _Kept(previous, turn, before + len(inputs), answer, self.clock(),
                                       history + len(turn) + 2 * size, size)
        self.bytes += kept.size
        while len(self._kept) > self.max_responses or (self.bytes > self.max_bytes and len(self._kept) > 1):
            self._drop(next(iter(self._kept)))

    async def get(self, rid: str) -> dict[str, Any]:
        kept = self._get(rid)
        response = kept.answer.parsed() if kept is not None else None
        if response is None:
            if kept is not None:
                self._drop(rid)
            raise _unknown(rid, "no")
        return response

    async def delete(self, rid: str) -> dict[str, Any]:
        if self._get(rid) is None:
            raise _unknown(rid, "no")
        self._drop(rid)
        return {"id": rid, "object": "response", "deleted": True}

    async def aclose(self) -> None:
        self._kept.clear()
        self.bytes = 0


def _dumps(value: Any) -> bytes:
    return json_text.dumps(value)  # orjson, with the stdlib for what it refuses (a lone surrogate)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


# Follow a chain back from ARGV[1]: each record's turn items, newest first. A missing record (expired)
# ends the list with false, and the caller refuses the chain; a deleted response is refused only when
# it is the one named (its items stay for the responses after it, until they expire).
_WALK = """
local out = {}
local id = ARGV[1]
for i = 1, tonumber(ARGV[2]) do
  if not id or id == '' then return out end
  local rec = redis.call('HMGET', KEYS[1] .. id, 'previous', 'items', 'deleted')
  if not rec[2] or (i == 1 and rec[3]) then out[#out + 1] = false; return out end
  out[#out + 1] = rec[2]
  id = rec[1]
end
return out
"""


class RedisResponses:
    """Records in Redis hashes (``{archc-resp}:{id}``: previous, count, items, response), expiring
    after ``ttl_s``. A Redis failure answers 503 for a request that needs a stored response; keeping
    one that fails is logged by the caller's generation, and the answer still goes out."""

    PREFIX = "{archc-resp}:"  # one hash tag: the walk's keys stay in one slot on Redis Cluster

    def __init__(self, url: str, *, ttl_s: float = DEFAULT_TTL_S, timeout_s: float = 1.0) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=16, timeout=timeout_s, socket_timeout=timeout_s,
                                                        socket_connect_timeout=timeout_s, health_check_interval=0)
        self._pool = pool
        self._client = aioredis.Redis(connection_pool=pool, retry=None)
        self._walk = self._client.register_script(_WALK)

    async def _call(self, call: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(call, timeout=self.timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise ProviderUnavailable(f"the response store (redis) cannot be reached: {type(exc).__name__}",
                                      code="response_store_unavailable") from exc

    async def history(self, rid: str | None) -> list[dict[str, Any]]:
        if not rid:
            return []
        records = await self._call(self._walk(keys=[self.PREFIX], args=[rid, MAX_CHAIN]))
        if not records or records[-1] is None or records[-1] is False:
            raise _unknown(rid) if len(records) <= 1 else NotFound(
                f"previous_response_id: part of the history of {rid!r} has expired or was deleted", code="response_not_found")
        items: list[dict[str, Any]] = []
        for raw in reversed(records):
            items.extend(json.loads(raw))
        return items

    async def keep(self, body: Mapping[str, Any], response: Kept) -> None:
        if body.get("store") is False:
            return
        if isinstance(response, RawResponse):
            parsed = response.parsed()
            if parsed is None:
                return  # an upstream's malformed final event: nothing to keep
            response = parsed
        previous = body.get("previous_response_id") or ""
        before = int(await self._call(self._client.hget(self.PREFIX + previous, "count")) or 0) if previous else 0
        turn = _turn(body, response, before)
        key = self.PREFIX + response["id"]
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, mapping={"previous": previous, "count": before + len(turn), "items": json.dumps(turn),
                                "response": json.dumps(response)})
        pipe.expire(key, int(self.ttl_s))
        await self._call(pipe.execute())

    async def get(self, rid: str) -> dict[str, Any]:
        raw = await self._call(self._client.hget(self.PREFIX + rid, "response"))
        if raw is None:
            raise _unknown(rid, "no")
        return json.loads(raw)

    async def delete(self, rid: str) -> dict[str, Any]:
        """Forget the response: it can no longer be read or continued; the responses after it keep
        their history (as in the memory store, where each holds its own)."""
        key = self.PREFIX + rid
        pipe = self._client.pipeline(transaction=True)
        pipe.hdel(key, "response")
        pipe.hset(key, "deleted", 1)
        removed, _ = await self._call(pipe.execute())
        if not removed:
            await self._call(self._client.hdel(key, "deleted"))  # it was not there: leave no trace
            raise _unknown(rid, "no")
        return {"id": rid, "object": "response", "deleted": True}

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()  # the client does not own a pool it was given


def store_for(gateway: Mapping[str, Any]) -> MemoryResponses | RedisResponses:
    """The store ``gateway.responses_store`` names (memory unless its url is redis:// or rediss://)."""
    cfg = gateway.get("responses_store") or {}
    url = str(cfg.get("url") or "memory://")
    ttl = float(cfg.get("ttl_s", DEFAULT_TTL_S))
    if url.startswith("memory://"):
        return MemoryResponses(int(cfg.get("max_responses", DEFAULT_MAX_RESPONSES)), ttl,
                               max_bytes=int(cfg.get("max_bytes", DEFAULT_MAX_BYTES)))
    return RedisResponses(url, ttl_s=ttl, timeout_s=float(cfg.get("timeout_ms", 1000)) / 1000.0)
