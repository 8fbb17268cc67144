"""Deadlines: the listener's ``timeout`` (archgw's ``listeners[].timeout``) bounds each request end to
end through a real `archc serve` process, a provider's own ``timeout`` overrides it, and retries fit
in what is left; the between-bytes read timeout (ARCHC_READ_TIMEOUT_S, 600 s) never gets a say.

Non-streamed: a 504 in the client's format at the deadline. Streamed: the chunks sent so far, then
the client's error event, then the end of the stream. The upstream is tests/support/fault_server.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.fault_server import FaultServer
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

DEADLINE_S = 1.0
SLACK_S = 1.5  # generous: a loaded 2-core CI machine; the point is "at the deadline", not "after 600 s"
CLOSE = {"connection": "close"}  # every request on its own socket (see upstream/test_faults.py)


def _config(server: FaultServer, gateway: str = "", deadline: str = "1s") -> str:
    def p(name: str, fault: str, extra: str = "") -> str:
        return (f"  - {{name: {name}, model: openai/gpt-4o, base_url: 'http://127.0.0.1:{server.port}/{fault}/v1', "
                f"provider_interface: openai{extra}}}\n")

    return ("version: v0.1.0\nlisteners:\n  - {type: model, name: llm, port: 12000, timeout: " + deadline + "}\nmodel_providers:\n"
            + p("stall", "stall", ", default: true") + p("slow", "slow1500") + p("patient", "slow1500", ", timeout: 5s")
            + p("hang", "hang") + p("hang2", "hang") + p("ok", "ok") + gateway)


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as s:
        yield s


@pytest.fixture(scope="module")
def plain(server: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """No ``gateway:`` section: only the listener timeout bounds a request (the case of most archgw configs)."""
    path = tmp_path_factory.mktemp("deadlines") / "config.yaml"
    path.write_text(_config(server))
    with Gateway(path, args=["--log-level", "warning"]) as gw:
        yield gw


def test_non_streamed_answer_that_stalls_after_its_headers_is_a_504_at_the_deadline(plain: Gateway) -> None:
    client = openai.OpenAI(base_url=plain.url + "/v1", api_key="x", max_retries=0, default_headers=CLOSE)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="stall", messages=[{"role": "user", "content": "hi"}])
    err = info.value
    assert err.status_code == 504
    assert "request deadline (listeners[llm].timeout, 1000 ms)" in err.body["message"]
    assert err.response.headers["x-arch-attempts"] == "stall=timeout"
    started = time.monotonic()
    r = httpx.post(plain.url + "/v1/messages", headers=CLOSE, timeout=30,
                   json={"model": "stall", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    elapsed = time.monotonic() - started
    assert r.status_code == 504 and r.json()["type"] == "error" and r.json()["error"]["type"] == "timeout_error", r.text
    assert "request deadline (listeners[llm].timeout, 1000 ms)" in r.json()["error"]["message"]
    assert DEADLINE_S - 0.05 < elapsed < DEADLINE_S + SLACK_S, elapsed


def test_streamed_answer_that_stalls_gets_its_chunks_then_an_error_event_at_the_deadline(plain: Gateway) -> None:
    client = openai.OpenAI(base_url=plain.url + "/v1", api_key="x", max_retries=0, default_headers=CLOSE)
    started = time.monotonic()
    texts: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="stall", stream=True, messages=[{"role": "user", "content": "hi"}]):
            texts.append(chunk.choices[0].delta.content or "")
    elapsed = time.monotonic() - started
    assert texts == ["sta"] and "request deadline (listeners[llm].timeout, 1000 ms)" in str(info.value)
    assert DEADLINE_S - 0.05 < elapsed < DEADLINE_S + SLACK_S, elapsed
    # An Anthropic client of the same (translated) stream gets Anthropic's error event, never message_stop.
    aclient = anthropic.Anthropic(base_url=plain.url, api_key="x", max_retries=0, default_headers=CLOSE)
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        with aclient.messages.stream(model="stall", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass
    assert "listeners[llm].timeout" in str(ainfo.value)
    assert time.monotonic() - started < DEADLINE_S + SLACK_S
    with httpx.stream("POST", plain.url + "/v1/messages", headers=CLOSE, timeout=30,
                      json={"model": "stall", "max_tokens": 10, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        body = r.read().decode()
    assert r.status_code == 200 and "event: error" in body and "message_stop" not in body, body


def test_a_providers_own_timeout_overrides_the_listeners(plain: Gateway) -> None:
    client = openai.OpenAI(base_url=plain.url + "/v1", api_key="x", max_retries=0, default_headers=CLOSE)
    # slow answers after 1.5 s: past the listener's 1 s...
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 504
    # ...and within patient's own 5 s.
    done = client.chat.completions.with_raw_response.create(model="patient", messages=[{"role": "user", "content": "hi"}])
    assert done.parse().choices[0].message.content == "fine" and done.headers["x-arch-target"] == "patient"


def test_retries_and_fallbacks_fit_in_what_is_left_of_the_deadline(server: FaultServer, tmp_path: Path) -> None:
    # 2 s and 700 ms (not 1 s and 400 ms): room for a loaded CI machine between the attempts.
    gateway = ("gateway:\n  timeouts: {first_byte_ms: 700}\n  retries: {max_attempts: 2, backoff_ms: 10, backoff_cap_ms: 10}\n"
               "  fallbacks: {hang: [hang2], slow: [ok]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(_config(server, gateway, deadline="2s"))
    with Gateway(path, args=["--log-level", "warning"]) as gw:
        started = time.monotonic()
        r = httpx.post(gw.url + "/v1/chat/completions", headers=CLOSE, timeout=30,
                       json={"model": "hang", "messages": [{"role": "user", "content": "hi"}]})
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and set(r.json()) == {"error"}, r.text
        attempts = r.headers["x-arch-attempts"].split(", ")
        # Two 700 ms attempts, then the fallback gets the ~600 ms left (four were allowed, three fit).
        assert attempts == ["hang=timeout", "hang=timeout", "hang2=timeout"], attempts
        assert "request deadline (listeners[llm].timeout, 2000 ms)" in r.json()["error"]["message"]
        assert 2.0 - 0.05 < elapsed < 2.0 + SLACK_S, elapsed
        # slow times out at first_byte_ms twice, then its fallback answers within the deadline.
        r = httpx.post(gw.url + "/v1/chat/completions", headers=CLOSE, timeout=30,
                       json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.headers["x-arch-target"] == "ok", r.text
        assert r.headers["x-arch-attempts"] == "slow=timeout, slow=timeout, ok=ok"
        # A stream: the deadline holds the whole stream, across the same policy.
        with httpx.stream("POST", gw.url + "/v1/chat/completions", headers=CLOSE, timeout=30,
                          json={"model": "stall", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as s:
            lines = [ln for ln in s.read().decode().splitlines() if ln.startswith("data: {")]
        assert "listeners[llm].timeout" in json.loads(lines[-1][6:])["error"]["message"]
