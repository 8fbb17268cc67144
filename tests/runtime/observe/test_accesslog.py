"""runtime/observe/accesslog.py: one JSON line per request, decision headers kept, secrets never logged."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from runtime.http.asgi import request_state
from runtime.observe.accesslog import AccessLogMiddleware, redact_query, redact_text

pytestmark = pytest.mark.anyio

SECRET = "sk-live-abcdefghijklmnop"


async def _app(scope: dict, receive: Any, send: Any) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("bug")
    request_state(scope).key_name = "team-a"
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"x-arch-route", b"code"), (b"x-arch-target", b"openai/gpt-4o"),
        (b"x-arch-attempts", b"openai/gpt-4o=503, backup/gpt-4o=ok")]})
    await send({"type": "http.response.body", "body": b'{"ok":', "more_body": True})
    await send({"type": "http.response.body", "body": b"true}"})


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "archc.access"]


async def test_one_line_per_request_with_decision_and_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    app = AccessLogMiddleware(_app)
    caplog.set_level(logging.INFO, logger="archc.access")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        r = await client.post(f"/v1/chat/completions?api-key={SECRET}&x=1", content=b"{}",
                              headers={"authorization": f"Bearer {SECRET}", "x-api-key": SECRET, "x-request-id": "req-42",
                                       "user-agent": f"sdk {SECRET}"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
        r2 = await client.get("/v1/models", headers={"x-request-id": "bad id\nwith newline"})
        assert len(r2.headers["x-request-id"]) == 32  # replaced by a fresh id
    lines = _lines(caplog)
    assert len(lines) == 2
    first = lines[0]
    assert first["request_id"] == "req-42" and first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["status"] == 200 and first["bytes_out"] == len(b'{"ok":true}') and first["bytes_in"] == 2
    assert first["route"] == "code" and first["target"] == "openai/gpt-4o"
    assert first["attempts"] == "openai/gpt-4o=503, backup/gpt-4o=ok"
    assert first["gateway_key"] == "team-a"
    assert "api-key=%5Bredacted%5D" in first["query"] or "api-key=[redacted]" in first["query"]
    assert SECRET not in caplog.text


async def test_line_written_when_the_app_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="archc.access")
    app = AccessLogMiddleware(_app)
    with pytest.raises(RuntimeError):
        await app({"type": "http", "method": "GET", "path": "/boom", "headers": []}, None, None)
    (line,) = _lines(caplog)
    assert line["status"] == 499 and line["error"] == "RuntimeError"


def test_redaction_helpers() -> None:
    assert redact_text(f"key {SECRET} and Bearer abc.def") == "key [redacted] and [redacted]"
    assert redact_query("token=abc&model=gpt") == "token=[redacted]&model=gpt"
    assert redact_query("") == ""


async def test_header_names_in_any_case(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [
            (b"X-Arch-Route", b"code"), (b"x-Arch-Target", b"openai/gpt-4o"), (b"x-arch-target", b"backup/gpt-4o"),
            (b"X-Request-ID", b"from-app")]})
        await send({"type": "http.response.body", "body": b"{}"})

    caplog.set_level(logging.INFO, logger="archc.access")
    sent: list = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [(b"x-request-id", b"a"), (b"x-request-id", b"b")]}
    await AccessLogMiddleware(app)(scope, None, send)
    assert [k for k, _ in sent[0]["headers"]].count(b"X-Request-ID") == 1 and len(sent[0]["headers"]) == 4  # the app's id is kept
    (line,) = _lines(caplog)
    assert line["request_id"] == "b"  # the last one the client sent
    assert line["route"] == "code" and line["target"] == "backup/gpt-4o" and line["status"] == 201 and line["bytes_out"] == 2
