"""Two `archc serve` processes share one Redis-backed limit: of 3L requests spread over both, exactly L pass."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

LIMIT = 100
CHAT = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _bundle(folder: Path, redis_url: str, timeout_ms: int = 3000) -> Path:
    # The provider's key variable is unset and the gateways run with --echo: the built-in echo
    # upstream answers, so only the gateways and Redis are under test.
    providers = [provider("openai/gpt-4o", "http://127.0.0.1:9/v1/chat/completions", auth="bearer",
                          key_env="ARCHC_TEST_UNSET_KEY", default=True)]
    ext = {"gateway": {"request_limits": [{"requests": LIMIT, "unit": "minute"}],
                       "ratelimit_backend": {"url": redis_url, "on_unavailable": "closed", "timeout_ms": timeout_ms}}}
    return write_bundle(folder, bundle_dict(providers, extensions=ext))


async def test_two_processes_share_one_limit(redis_url: str, tmp_path: Path) -> None:
    path = _bundle(tmp_path, redis_url)
    env = {"ARCHC_TEST_UNSET_KEY": ""}
    with Gateway(path, args=["--echo", "--log-level", "warning"], env=env) as a, \
            Gateway(path, args=["--echo", "--log-level", "warning"], env=env) as b:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=a.url, limits=limits, timeout=30) as ca, \
                httpx.AsyncClient(base_url=b.url, limits=limits, timeout=30) as cb:
            clients = [ca, cb]
            responses = await asyncio.gather(*(clients[i % 2].post("/v1/chat/completions", json=CHAT) for i in range(3 * LIMIT)))
    statuses = [r.status_code for r in responses]
    passed = statuses.count(200)
    assert abs(passed - LIMIT) <= LIMIT // 100, f"{passed} of {3 * LIMIT} passed; limit {LIMIT}"
    assert statuses.count(429) == 3 * LIMIT - passed
    served_by = {i % 2 for i, r in enumerate(responses) if r.status_code == 200}
    assert served_by == {0, 1}  # both processes admitted some: the limit really is shared
    denied = next(r for r in responses if r.status_code == 429)
    assert denied.json()["error"]["type"] == "rate_limit_error"
    assert denied.headers["x-ratelimit-limit"] == str(LIMIT) and denied.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(denied.headers["retry-after"]) <= 60 and int(denied.headers["x-ratelimit-reset"]) <= 60
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit"] == str(LIMIT)


async def test_redis_down_fails_closed_with_503_not_a_hang(dead_redis_url: str, tmp_path: Path) -> None:
    path = _bundle(tmp_path, dead_redis_url, timeout_ms=300)
    with Gateway(path, args=["--echo", "--log-level", "warning"], env={"ARCHC_TEST_UNSET_KEY": ""}) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            r = await client.post("/v1/messages", json={**CHAT, "max_tokens": 5})
            assert loop.time() - started < 3
            assert r.status_code == 503 and r.json()["type"] == "error" and r.headers["retry-after"] == "1"
            metrics = (await client.get("/metrics")).text
    assert "archc_ratelimit_backend_errors_total 1.0" in metrics
    assert 'archc_ratelimit_decisions_total{result="failed_closed"} 1.0' in metrics
