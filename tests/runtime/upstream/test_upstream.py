"""The upstream client: headers sent, error statuses and transport failures mapped to the error tree."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from archc.bundle import seal
from runtime.upstream import client as upstream
from runtime.errors import BadUpstreamResponse, UpstreamError, UpstreamStatus, UpstreamTimeout
from runtime.upstream.targets import build_targets
from runtime.settings import Settings
from tests.support.fake_upstream import FakeUpstream, Response, error, openai_text, stalling
from tests.support.gateway import bundle_dict, provider
from tests.support.mock_pool import MockPool

URL = "http://upstream.test/v1/messages"


def _target(key="sk-ant-secret"):
    b = seal(bundle_dict([provider("anthropic/claude-x", URL, wire="anthropic_messages", auth="x-api-key",
                                   key_env="ANTHROPIC_API_KEY", default=True)]))
    return build_targets(b, {"ANTHROPIC_API_KEY": key})["anthropic/claude-x"]


def _run(handler, coro_fn):
    async def main():
        pool = MockPool(handler)
        try:
            return await coro_fn(upstream.Upstream(pool))
        finally:
            await pool.aclose()
    return asyncio.run(main())


def test_post_json_sends_auth_headers_and_body():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(headers=dict(request.headers), body=json.loads(request.content), url=str(request.url))
        return httpx.Response(200, json={"ok": True})

    out = _run(handler, lambda c: c.post_json(_target(), b'{"model":"claude-x"}', {"anthropic-beta": "b1"}))
    assert out == {"ok": True}
    assert seen["url"] == URL and seen["body"] == {"model": "claude-x"}
    assert seen["headers"]["x-api-key"] == "sk-ant-secret"
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["headers"]["anthropic-beta"] == "b1"


def test_error_status_keeps_code_and_message_without_key():
    def handler(request):
        return httpx.Response(401, json={"type": "error", "error": {"type": "authentication_error",
                                                                       "message": "invalid x-api-key sk-ant-secret"}})

    with pytest.raises(UpstreamStatus) as info:
        _run(handler, lambda c: c.post_json(_target(), b"{}"))
    assert info.value.status == 401 and info.value.kind == "authentication_error"
    assert "sk-ant-secret" not in info.value.message and "invalid x-api-key" in info.value.message


@pytest.mark.parametrize("exc, kind", [(httpx.ConnectError("refused"), UpstreamError), (httpx.ReadTimeout("slow"), UpstreamTimeout)])
def test_transport_failures_map_to_upstream_errors(exc, kind):
    def handler(request):
        raise exc

    with pytest.raises(kind) as info:
        _run(handler, lambda c: c.post_json(_target(), b"{}"))
    assert "anthropic/claude-x" in info.value.message
    assert info.value.status == (504 if kind is UpstreamTimeout else 502)


def test_invalid_json_answer_is_a_bad_response():
    with pytest.raises(BadUpstreamResponse, match="answered 200 with text/html that is not JSON"):
        _run(lambda r: httpx.Response(200, content=b"<html>", headers={"content-type": "text/html"}),
             lambda c: c.post_json(_target(), b"{}"))
    with pytest.raises(BadUpstreamResponse, match="answered 200 with an empty body"):
        _run(lambda r: httpx.Response(200, content=b""), lambda c: c.post_json(_target(), b"{}"))


def test_a_stream_answered_with_json_is_a_bad_response_carrying_its_message():
    answer = httpx.Response(200, json={"error": {"message": "quota exceeded"}})
    with pytest.raises(BadUpstreamResponse, match="answered a streamed request with application/json, not an event "
                                                   "stream: quota exceeded"):
        _run(lambda r: answer, lambda c: c.open_stream(_target(), b"{}"))


def test_stream_yields_bytes_as_they_arrive():
    async def body():
        yield b"event: a\ndata: 1\n\n"
        yield b"event: b\ndata: 2\n\n"

    async def consume(client):
        s = await client.open_stream(_target(), b"{}")
        got = [c async for c in s]
        await s.aclose()
        return got

    got = _run(lambda r: httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"}), consume)
    assert b"".join(got) == b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"


def test_default_transport_closing_a_stream_early_closes_the_upstream_connection():
    """The real transport: abandoning a stream drops the connection, and the upstream sees it."""
    with FakeUpstream() as up:
        up.script(stalling(openai_text("a b c d e f")))
        b = seal(bundle_dict([provider("openai/gpt-4o", up.openai_endpoint(), default=True)]))
        target = build_targets(b, {})["openai/gpt-4o"]

        async def main():
            pool = upstream.build_pool(Settings())
            try:
                s = await upstream.Upstream(pool).open_stream(target, b'{"model":"gpt-4o","stream":true,"messages":[]}')
                async for chunk in s:
                    assert chunk
                    break
                await s.aclose()
            finally:
                await pool.aclose()

        asyncio.run(main())
        assert up.wait_disconnect(5), "the fake upstream never saw the connection close"


def test_upstream_cookies_are_not_kept_between_requests():
    """A shared client must not carry one user's upstream cookies into the next user's request."""
    seen = []

    def handler(request):
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={}, headers={"set-cookie": "session=user-a; Path=/"})

    async def twice(c):
        await c.post_json(_target(), b"{}")
        await c.post_json(_target(), b"{}")

    _run(handler, twice)
    assert seen == [None, None]


@pytest.mark.parametrize("kind", ["h1", "httpx"])
def test_the_comparison_transport_gives_the_same_answer_streamed_and_not(kind):
    """The gateway's pool and bench/transports.py's httpx pool behind the same interface: the bench
    compares clients, so the answers must be the same (httpx-aiohttp needs the bench extra)."""
    from bench.transports import HttpxPool

    with FakeUpstream() as up:
        up.script(openai_text("same either way"), openai_text("same either way"))
        b = seal(bundle_dict([provider("openai/gpt-4o", up.openai_endpoint(), default=True)]))
        target = build_targets(b, {})["openai/gpt-4o"]

        async def main():
            pool = upstream.build_pool(Settings()) if kind == "h1" else HttpxPool(kind, Settings())
            try:
                sender = upstream.Upstream(pool)
                out = await sender.post_json(target, b'{"model":"gpt-4o","messages":[]}')
                stream = await sender.open_stream(target, b'{"model":"gpt-4o","stream":true,"messages":[]}')
                chunks = [chunk async for chunk in stream]
                await stream.aclose()
                return out, b"".join(chunks), stream.content_type
            finally:
                await pool.aclose()

        out, streamed, content_type = asyncio.run(main())
    assert out["choices"][0]["message"]["content"] == "same either way"
    assert streamed.endswith(b"data: [DONE]\n\n") and b'same' in streamed and content_type.startswith("text/event-stream")


def test_default_transport_maps_faults_to_the_error_tree():
    """Refused -> UpstreamError (502), no answer -> UpstreamTimeout (504), error status -> UpstreamStatus."""
    with FakeUpstream() as up:
        up.script(lambda fmt, body: Response(events=[], hold_open=True), error(429, "slow down"))
        b = seal(bundle_dict([provider("openai/gpt-4o", up.openai_endpoint(), default=True),
                              provider("openai/down", "http://127.0.0.1:9/v1/chat/completions")]))
        targets = build_targets(b, {})

        async def main():
            pool = upstream.build_pool(Settings(read_timeout_s=0.3))
            sender = upstream.Upstream(pool)
            try:
                errors = []
                for name, body in (("openai/down", b"{}"), ("openai/gpt-4o", b'{"stream":true}'), ("openai/gpt-4o", b"{}")):
                    try:
                        stream = await sender.open_stream(targets[name], body)
                        [chunk async for chunk in stream]
                    except (UpstreamError, UpstreamStatus, UpstreamTimeout) as exc:
                        errors.append(exc)
                return errors
            finally:
                await pool.aclose()

        refused, timeout, status = asyncio.run(main())
    assert type(refused) is UpstreamError and refused.status == 502 and "could not be reached" in refused.message
    assert isinstance(timeout, UpstreamTimeout) and timeout.status == 504
    assert isinstance(status, UpstreamStatus) and status.status == 429 and "slow down" in status.message
