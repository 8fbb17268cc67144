"""An upstream's 429 through a real `archc serve`: retry-after and the provider's rate-limit headers
reach the client (both SDKs pace their retries by them), and archc's own retries wait at least as
long as the upstream asked, or move to the fallback at once when the wait does not fit the deadline.

Waits are measured on the fake upstream's arrival clock, with generous upper bounds.
"""

from __future__ import annotations

import time
from typing import Iterator

import anthropic
import httpx
import openai
import pytest

from archc.compiler import compile_source
from tests.support.fake_upstream import FakeUpstream, error
from tests.support.gateway import Gateway, write_bundle

pytestmark = pytest.mark.e2e

LIMITED = {"retry-after": "2", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s",
           "anthropic-ratelimit-requests-remaining": "0"}


def _config(up: FakeUpstream, gateway: str = "", timeout: str = "30s") -> str:
    return (f"version: v0.3.0\nlisteners:\n  - {{type: model, name: llm, timeout: {timeout}}}\nmodel_providers:\n"
            f"  - {{name: oai, model: openai/gpt-4o, base_url: '{up.url}/v1', default: true}}\n"
            f"  - {{name: ant, model: anthropic/claude-x, base_url: '{up.url}'}}\n"
            f"  - {{name: spare, model: openai/spare, base_url: '{up.url}/spare/v1'}}\n" + gateway)


@pytest.fixture
def serve(tmp_path, start_gateway):
    def start(config: str) -> Gateway:
        result = compile_source(config, lock_mode="ignore")
        assert result.ok, [d.message for d in result.diagnostics]
        return start_gateway(write_bundle(tmp_path, result.bundle))
    return start


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.mark.parametrize("model,path", [("oai", "/v1/chat/completions"), ("ant", "/v1/messages")])
def test_429_headers_reach_the_client(up, serve, model, path) -> None:
    gw = serve(_config(up))
    up.script(error(429, "slow down", kind="rate_limit_error", headers=LIMITED))
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    r = httpx.post(gw.url + ("/v1/chat/completions" if model == "oai" else "/v1/messages"), json=body, timeout=30)
    assert r.status_code == 429
    for name, value in LIMITED.items():
        assert r.headers[name] == value
    assert up.requests[-1].path == path


def test_openai_sdk_paces_its_retry_by_retry_after(up, serve) -> None:
    gw = serve(_config(up))
    up.script(error(429, "slow down", kind="rate_limit_error", headers={"retry-after": "2"}))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=1)
    started = time.monotonic()
    answer = client.chat.completions.create(model="oai", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "ok"
    gap = up.requests[1].at - up.requests[0].at
    assert 1.9 <= gap < 10, gap  # the SDK's own default would be about 0.5-1 s
    assert time.monotonic() - started >= 1.9


def test_anthropic_sdk_paces_its_retry_by_retry_after_ms(up, serve) -> None:
    gw = serve(_config(up))
    up.script(error(429, "slow down", kind="rate_limit_error", headers={"retry-after-ms": "2500"}))
    client = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=1)
    msg = client.messages.create(model="ant", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "ok"
    gap = up.requests[1].at - up.requests[0].at
    assert 2.4 <= gap < 10, gap


def test_archc_retries_wait_for_retry_after(up, serve) -> None:
    gw = serve(_config(up, "gateway:\n  retries: {max_attempts: 3, backoff_ms: 10}\n"))
    up.script(error(429, headers={"retry-after": "1"}), error(429, headers={"retry-after": "1"}))
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "oai", "messages": [{"role": "user", "content": "hi"}]},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-arch-attempts"] == "oai=429, oai=429, oai=ok"
    times = [q.at for q in up.requests]
    assert len(times) == 3 and all(0.95 <= b - a < 8 for a, b in zip(times, times[1:])), times


def test_retry_after_past_the_deadline_falls_back_at_once(up, serve) -> None:
    gw = serve(_config(up, "gateway:\n  retries: {max_attempts: 3, backoff_ms: 10}\n  fallbacks: {oai: [spare]}\n",
                       timeout="5s"))
    up.script(error(429, headers={"retry-after": "30"}))
    started = time.monotonic()
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "oai", "messages": [{"role": "user", "content": "hi"}]},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-arch-attempts"] == "oai=429, spare=ok"
    assert [q.path for q in up.requests] == ["/v1/chat/completions", "/spare/v1/chat/completions"]
    assert time.monotonic() - started < 4
