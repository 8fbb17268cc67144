"""The cause of every upstream failure is in the gateway's log, through a real `archc serve`: one
WARNING line per failed attempt (provider, attempt, outcome, cause class, scrubbed message, ms),
and a 200 stream that ended with an error event is logged as such in the access line."""

from __future__ import annotations

import json

import httpx
import pytest

from archc.compiler import compile_source
from tests.support.fake_upstream import FakeUpstream, error, lying
from tests.support.gateway import free_port, write_bundle

pytestmark = pytest.mark.e2e

CHAT = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}


def _serve(tmp_path, start_gateway, base_url: str, gateway: str = ""):
    config = ("version: v0.3.0\nlisteners:\n  - {type: model, name: llm, timeout: 20s}\nmodel_providers:\n"
              f"  - {{name: up, model: openai/gpt-4o, base_url: '{base_url}', default: true, access_key: $UP_KEY}}\n" + gateway)
    result = compile_source(config, lock_mode="ignore")
    assert result.ok
    return start_gateway(write_bundle(tmp_path, result.bundle), env={"UP_KEY": "sk-very-secret-upstream-key"})


def _access(logs: str) -> list[dict]:
    return [json.loads(line[line.index("{"):]) for line in logs.splitlines() if "archc.access" in line and "{" in line]


def test_each_failed_attempt_is_one_warning_with_its_cause(tmp_path, start_gateway) -> None:
    closed = free_port()
    gw = _serve(tmp_path, start_gateway, f"http://127.0.0.1:{closed}/v1", "gateway:\n  retries: {max_attempts: 2, backoff_ms: 10}\n")
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 502
    warnings = [line for line in gw.logs().splitlines() if "upstream attempt failed" in line]
    assert len(warnings) == 2, gw.logs()
    for n, line in enumerate(warnings, 1):
        assert "WARNING" in line and f"provider=up attempt={n} outcome=error cause=ConnectionRefusedError" in line
        assert "ms=" in line and "could not be reached" in line


def test_upstream_status_cause_is_logged_without_the_key(tmp_path, start_gateway) -> None:
    with FakeUpstream() as up:
        gw = _serve(tmp_path, start_gateway, up.url + "/v1")
        up.script(error(500, "backend exploded; your key sk-very-secret-upstream-key was fine"))
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 500
    logs = gw.logs()
    line = next(line for line in logs.splitlines() if "upstream attempt failed" in line)
    assert "outcome=500 cause=UpstreamStatus" in line and "backend exploded" in line
    assert "sk-very-secret-upstream-key" not in logs


def test_a_stream_that_breaks_is_not_logged_as_a_success(tmp_path, start_gateway) -> None:
    with FakeUpstream() as up:
        gw = _serve(tmp_path, start_gateway, up.url + "/v1")
        up.script(lying("truncated"))
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30) as r:
            assert r.status_code == 200
            text = r.read().decode()
        assert '"error"' in text
        up.script()
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
    lines = _access(gw.logs())
    broken, fine = lines[-2], lines[-1]
    assert broken["status"] == 200 and broken["outcome"] == "stream_error" and broken["stream_error"] == "bad_response"
    assert broken["attempts"] == "up=bad_response"
    assert fine["outcome"] == "ok" and fine["attempts"] == "up=ok"
    assert any("outcome=stream_bad_response" in line for line in gw.logs().splitlines())
