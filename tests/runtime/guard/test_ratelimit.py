"""runtime/guard/ratelimit/: sliding-window rules, memory and Redis backends, fail-open/closed, middleware."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest

from archc.bundle import seal
from runtime.guard.ratelimit import (
    MemoryBackend,
    RateLimiter,
    RateLimitMiddleware,
    RedisBackend,
    RequestInfo,
    Rule,
    bucket_key,
    rules_from_bundle,
)

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _bundle(ratelimits: list | None = None, gateway: dict | None = None):
    provider = lambda name, model: {  # noqa: E731
        "name": name, "provider": name.split("/")[0], "model": model, "wire": "openai_chat",
        "endpoint": "http://127.0.0.1:9/v1/chat/completions", "auth": "none",
    }
    return seal({
        "source": {}, "listeners": [],
        "providers": [provider("openai/gpt-4o", "gpt-4o"), provider("openai/gpt-4o-mini", "gpt-4o-mini")],
        "aliases": [{"name": "arch.fast.v1", "target": "openai/gpt-4o-mini", "chain": ["arch.fast.v1", "openai/gpt-4o-mini"], "pinned": True}],
        "routes": [], "default_model": "openai/gpt-4o", "routing": {}, "router": None,
        "ratelimits": ratelimits or [],
        "extensions": {"gateway": gateway} if gateway else {},
    })


def _info(model: str | None = "gpt-4o", headers: dict | None = None, key: str | None = None, tokens: int = 1) -> RequestInfo:
    return RequestInfo(model, headers or {}, key, tokens)


def test_rules_from_archgw_ratelimits_and_request_limits() -> None:
    bundle = _bundle(
        ratelimits=[{"model": "openai/gpt-4o", "selector": {"key": "x-user", "value": "alice"}, "limit": {"tokens": 100, "unit": "minute"}}],
        gateway={"request_limits": [{"requests": 5, "unit": "second", "gateway_key": "*"}]},
    )
    rules = rules_from_bundle(bundle)
    assert [(r.kind, r.limit, r.window_s, r.model, r.header, r.value, r.gateway_key) for r in rules] == [
        ("tokens", 100, 60.0, "openai/gpt-4o", "x-user", "alice", None),
        ("requests", 5, 1.0, None, None, None, "*"),
    ]
    assert rules[0].rule_id != rules[1].rule_id
    assert rules_from_bundle(bundle)[0].rule_id == rules[0].rule_id  # stable across reloads


def test_bucket_key_selector_model_and_gateway_key() -> None:
    bundle = _bundle()
    exact = Rule("requests", 1, 60, model="openai/gpt-4o-mini", header="x-user", value="alice")
    assert bucket_key(exact, _info("arch.fast.v1", {"x-user": "alice"}), bundle) is not None  # alias resolves to the rule's model
    assert bucket_key(exact, _info("gpt-4o-mini", {"x-user": "alice"}), bundle) is not None  # bare id
    assert bucket_key(exact, _info("gpt-4o", {"x-user": "alice"}), bundle) is None  # other model
    assert bucket_key(exact, _info("gpt-4o-mini", {"x-user": "bob"}), bundle) is None  # other value
    assert bucket_key(exact, _info("gpt-4o-mini", {}), bundle) is None  # header absent
    each = Rule("requests", 1, 60, header="x-user", value="*")
    assert bucket_key(each, _info(headers={"x-user": "a"})) != bucket_key(each, _info(headers={"x-user": "b"}))
    per_key = Rule("requests", 1, 60, gateway_key="*")
    assert bucket_key(per_key, _info(key=None)) is None
    assert bucket_key(per_key, _info(key="a")) != bucket_key(per_key, _info(key="b"))
    one_key = Rule("requests", 1, 60, gateway_key="a")
    assert bucket_key(one_key, _info(key="b")) is None and bucket_key(one_key, _info(key="a")) is not None


def test_prompt_tokens_counts_prompt_text() -> None:
    from runtime.wire.tokens import prompt_tokens, text_tokens

    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}, {"role": "user", "content": [{"type": "text", "text": "y" * 40}]}], "system": "z" * 4}
    assert prompt_tokens(body) == 114  # (400 + 40 + 4 + "user" x2 + "text") / 4: roles and types count too
    assert prompt_tokens({"model": "m"}) == 1
    assert prompt_tokens({"model": "m", "instructions": "i" * 40, "input": "x" * 40}) == 20  # a Responses body
    assert prompt_tokens("not a dict") == 1
    assert text_tokens("") == 1 and text_tokens("abcde") == 2


async def test_memory_sliding_window_exact_and_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Rule("requests", 3, 60)], MemoryBackend(clock))
    got = []
    for dt in (0, 10, 20, 10):
        clock.now += dt
        got.append(await limiter.check(_info()))
    assert [v.allowed for v in got] == [True, True, True, False]
    denied = got[3].headers()
    # Now t=40. The first admission (t=0) frees a slot at t=60 (retry-after 20); the newest
    # (t=30) leaves the window at t=90, when the limit is whole again (reset 50).
    assert denied == {"x-ratelimit-limit": "3", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "50", "retry-after": "20"}
    assert got[0].headers()["x-ratelimit-remaining"] == "2"
    clock.now += 19.9
    assert not (await limiter.check(_info())).allowed
    clock.now += 0.2
    assert (await limiter.check(_info())).allowed
    assert limiter.counts["allowed"] == 4 and limiter.counts["limited"] == 2


async def test_all_or_nothing_across_rules() -> None:
    clock = FakeClock()
    wide = Rule("requests", 10, 60)
    narrow = Rule("requests", 1, 60, header="x-user", value="*")
    limiter = RateLimiter([wide, narrow], MemoryBackend(clock))
    assert (await limiter.check(_info(headers={"x-user": "a"}))).allowed
    denied = await limiter.check(_info(headers={"x-user": "a"}))
    assert not denied.allowed and denied.rule is narrow
    ok = await limiter.check(_info(headers={"x-user": "b"}))
    # The denied request charged nothing: 2 of 10 used on the wide rule.
    assert ok.allowed
    assert (await limiter.check(_info())).outcome.remaining == 7


async def test_token_rule_charges_estimated_tokens() -> None:
    limiter = RateLimiter([Rule("tokens", 100, 60)], MemoryBackend(FakeClock()))
    assert (await limiter.check(_info(tokens=60))).allowed
    v = await limiter.check(_info(tokens=60))
    assert not v.allowed and v.outcome.remaining == 40
    assert (await limiter.check(_info(tokens=40))).allowed
    too_big = await limiter.check(_info(tokens=1000))
    assert not too_big.allowed and too_big.headers()["retry-after"] == "60"


async def test_memory_backend_forgets_idle_buckets() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    limiter = RateLimiter([Rule("requests", 5, 1, header="x-user", value="*")], backend)
    for i in range(MemoryBackend.SWEEP_EVERY - 1):
        await limiter.check(_info(headers={"x-user": str(i)}))
    assert len(backend._logs) == MemoryBackend.SWEEP_EVERY - 1
    clock.now += 5
    await limiter.check(_info(headers={"x-user": "last"}))
    assert len(backend._logs) <= 1


async def test_redis_backend_matches_memory_semantics(redis_url: str) -> None:
    backend = RedisBackend(redis_url, timeout_s=3.0)
    try:
        limiter = RateLimiter([Rule("requests", 3, 60), Rule("tokens", 50, 60)], backend)
        results = [await limiter.check(_info(tokens=10)) for _ in range(4)]
        assert [v.allowed for v in results] == [True, True, True, False]
        assert results[3].headers()["x-ratelimit-remaining"] == "0"
        assert 58 <= int(results[3].headers()["retry-after"]) <= 60
        big = await limiter.check(_info(tokens=1000))
        assert not big.allowed
    finally:
        await backend.aclose()


async def test_redis_concurrent_acquire_is_exact(redis_url: str) -> None:
    # A generous timeout: this is about atomicity, and a loaded CI machine must not turn it into fail-open.
    backends = [RedisBackend(redis_url, timeout_s=3.0) for _ in range(3)]
    try:
        limiters = [RateLimiter([Rule("requests", 40, 60)], b) for b in backends]
        verdicts = await asyncio.gather(*(limiters[i % 3].check(_info()) for i in range(120)))
        assert sum(lim.counts["backend_errors"] for lim in limiters) == 0
        assert sum(v.allowed for v in verdicts) == 40
    finally:
        for b in backends:
            await b.aclose()


async def test_redis_short_window_expires(redis_url: str) -> None:
    backend = RedisBackend(redis_url, timeout_s=3.0)
    try:
        limiter = RateLimiter([Rule("requests", 2, 0.3)], backend)
        assert [(await limiter.check(_info())).allowed for _ in range(3)] == [True, True, False]
        await asyncio.sleep(0.35)
        assert (await limiter.check(_info())).allowed
    finally:
        await backend.aclose()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_unreachable_redis_fails_fast_open_or_closed(dead_redis_url: str, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    backend = RedisBackend(dead_redis_url, timeout_s=0.2)
    try:
        limiter = RateLimiter([Rule("requests", 1, 60)], backend, on_unavailable=mode)
        start = time.monotonic()
        verdicts = [await limiter.check(_info()) for _ in range(20)]
        elapsed = time.monotonic() - start
        assert elapsed < 1.5  # one short timeout, then marked down: no hang, no per-request wait
        assert all(v.backend_down for v in verdicts)
        assert all(v.allowed is (mode == "open") for v in verdicts)
        assert limiter.counts["backend_errors"] == 20
        assert limiter.counts[f"failed_{mode}"] == 20
        logged = [r for r in caplog.records if "rate-limit backend unavailable" in r.getMessage() and r.levelno >= logging.WARNING]
        assert 1 <= len(logged) <= 2  # a line per outage (and per second of it), not one per request
    finally:
        await backend.aclose()


def test_on_unavailable_is_checked() -> None:
    with pytest.raises(ValueError, match="on_unavailable"):
        RateLimiter([], MemoryBackend(), on_unavailable="maybe")


def test_from_bundle_picks_backend() -> None:
    assert RateLimiter.from_bundle(_bundle()) is None
    limiter = RateLimiter.from_bundle(_bundle(gateway={"request_limits": [{"requests": 1, "unit": "minute"}]}))
    assert isinstance(limiter.backend, MemoryBackend)
    redis_limiter = RateLimiter.from_bundle(
        _bundle(gateway={"request_limits": [{"requests": 1}], "ratelimit_backend": {"url": "redis://127.0.0.1:1/0", "on_unavailable": "closed"}})
    )
    assert isinstance(redis_limiter.backend, RedisBackend) and redis_limiter.on_unavailable == "closed"
    asyncio.run(redis_limiter.aclose())


# -- middleware --------------------------------------------------------------------------------

async def _echo_app(scope: dict, receive: Any, send: Any) -> None:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps({"echo": body.decode()}).encode()})


def _client(limiter: RateLimiter | None, max_body: int = 1 << 20) -> httpx.AsyncClient:
    app = RateLimitMiddleware(_echo_app, lambda scope: limiter, max_body_bytes=max_body)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_middleware_429_in_each_client_format() -> None:
    limiter = RateLimiter([Rule("requests", 1, 60)], MemoryBackend(FakeClock()))
    async with _client(limiter) as client:
        ok = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
        assert ok.status_code == 200
        assert json.loads(ok.json()["echo"]) == {"model": "gpt-4o", "messages": []}  # body replayed intact
        assert ok.headers["x-ratelimit-limit"] == "1" and ok.headers["x-ratelimit-remaining"] == "0"
        openai = await client.post("/v1/chat/completions", json={"model": "gpt-4o"})
        assert openai.status_code == 429
        assert openai.json()["error"]["type"] == "rate_limit_error"
        assert openai.headers["retry-after"] == "60" and openai.headers["x-ratelimit-remaining"] == "0"
        anthropic = await client.post("/v1/messages", content=b"{}")
        assert anthropic.status_code == 429
        assert anthropic.json() == {"type": "error", "error": {"type": "rate_limit_error", "message": anthropic.json()["error"]["message"]}}
        responses = await client.post("/v1/responses", json={"model": "gpt-4o", "input": "hi"})
        assert responses.status_code == 429 and responses.json()["error"]["type"] == "rate_limit_error"
        assert (await client.get("/v1/models")).status_code == 200  # only LLM calls are limited


async def test_middleware_passes_through_when_off_and_rejects_huge_bodies() -> None:
    async with _client(None) as client:
        r = await client.post("/v1/chat/completions", content=b"x" * 10)
        assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers
    limiter = RateLimiter([Rule("requests", 100, 60)], MemoryBackend(FakeClock()))
    async with _client(limiter, max_body=100) as client:
        r = await client.post("/v1/messages", content=b"x" * 101)
        assert r.status_code == 413 and r.json()["type"] == "error"
        r = await client.post("/v1/messages", content=b"not json")  # unparseable: the endpoint answers 400 later
        assert r.status_code == 200


async def test_middleware_fail_closed_is_503(dead_redis_url: str) -> None:
    backend = RedisBackend(dead_redis_url, timeout_s=0.1)
    limiter = RateLimiter([Rule("requests", 1, 60)], backend, on_unavailable="closed")
    try:
        async with _client(limiter) as client:
            r = await client.post("/v1/chat/completions", json={})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "rate-limit backend unavailable" in r.json()["error"]["message"]
    finally:
        await backend.aclose()
