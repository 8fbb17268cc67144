"""Bad input of every kind gets a specific 4xx in the client's format; mid-stream failures an error event."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.app import create_app
from runtime.errors import InvalidRequest, UpstreamStatus, render
from runtime.settings import Settings
from runtime.wire import WireFormat
from tests.support.app_support import CHAT, MESSAGES, Recorder
from tests.support.gateway import bundle_dict, provider

OAI = "http://up.test/v1/chat/completions"
ANT = "http://up.test/v1/messages"
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def _client(recorder=None, **settings):
    bundle = seal(bundle_dict([provider("openai/gpt-4o", OAI, default=True),
                               provider("anthropic/claude-x", ANT, wire="anthropic_messages")]))
    recorder = recorder or Recorder()
    return TestClient(create_app(bundle, pool=recorder.pool(), settings=Settings(**settings))), recorder


def _assert_error(r, fmt, status, *needles):
    assert r.status_code == status, r.text
    body = r.json()
    if fmt == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        message = body["error"]["message"]
    else:
        assert set(body) == {"error"} and {"message", "type"} <= set(body["error"])
        message = body["error"]["message"]
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in r.text


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
@pytest.mark.parametrize("content, needle", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "object"),
    (b"\xff\xfe\x00", "UTF-8"),
    (b'"just a string"', "object"),
])
def test_malformed_bodies_are_400(fmt, content, needle):
    client, rec = _client()
    with client:
        r = client.post(PATHS[fmt], content=content, headers={"content-type": "application/json"})
    _assert_error(r, fmt, 400, needle)
    assert rec.requests == []


@pytest.mark.parametrize("fmt, body, needle", [
    ("openai", {"model": "x"}, "messages"),
    ("openai", {**CHAT, "messages": "hi"}, "messages"),
    ("openai", {**CHAT, "stream": "yes"}, "stream"),
    ("openai", {**CHAT, "max_tokens": "ten"}, "max_tokens"),
    ("openai", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ("anthropic", {"model": "x", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ("anthropic", {**MESSAGES, "messages": [{"role": "user", "content": 5}]}, "content"),
    ("anthropic", {**MESSAGES, "system": 3}, "system"),
    ("anthropic", {**MESSAGES, "model": 12}, "model"),
])
def test_wrong_types_and_missing_fields_are_400_naming_the_field(fmt, body, needle):
    client, rec = _client()
    with client:
        r = client.post(PATHS[fmt], json=body)
    _assert_error(r, fmt, 400, needle)
    assert rec.requests == []


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
def test_body_over_the_limit_is_413(fmt):
    client, _ = _client(max_body_bytes=1000)
    big = {**(CHAT if fmt == "openai" else MESSAGES), "messages": [{"role": "user", "content": "x" * 2000}]}
    with client:
        r = client.post(PATHS[fmt], json=big)
        # No content-length (chunked upload): the limit still holds while reading.
        chunked = client.post(PATHS[fmt], content=iter([json.dumps(big).encode()[:600], json.dumps(big).encode()[600:]]))
    _assert_error(r, fmt, 413, "1000")
    _assert_error(chunked, fmt, 413, "1000")


def test_default_body_limit_is_10_mb():
    assert Settings().max_body_bytes == 10 * 1024 * 1024


def _broken_stream(fmt):
    """An upstream stream that sends one good event, then an error event."""
    if fmt == "openai":
        good = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"par"},"finish_reason":null}]}\n\n'
        bad = b'data: {"error":{"message":"overloaded upstream","type":"server_error","code":529}}\n\n'
    else:
        good = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
                b'"model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
                b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"par"}}\n\n')
        bad = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"overloaded upstream"}}\n\n'

    async def body():
        yield good
        yield bad

    return body


@pytest.mark.parametrize("client_fmt, upstream_fmt", [("openai", "openai"), ("openai", "anthropic"),
                                                      ("anthropic", "openai"), ("anthropic", "anthropic")])
def test_mid_stream_upstream_error_becomes_an_error_event_in_clients_format(client_fmt, upstream_fmt):
    respond = lambda request, body: httpx.Response(200, content=_broken_stream(upstream_fmt)(),
                                                   headers={"content-type": "text/event-stream"})
    client, _ = _client(Recorder(respond))
    model = "openai/gpt-4o" if upstream_fmt == "openai" else "anthropic/claude-x"
    body = {**(CHAT if client_fmt == "openai" else MESSAGES), "model": model, "stream": True}
    with client:
        r = client.post(PATHS[client_fmt], json=body)
    assert r.status_code == 200
    assert "par" in r.text and "overloaded upstream" in r.text
    if client_fmt == "anthropic":
        assert "event: error\n" in r.text
        last = json.loads(r.text.strip().split("\n")[-1][6:])
        assert last["type"] == "error"
    else:
        last = json.loads(r.text.strip().split("\n")[-1][6:])
        assert "error" in last


def test_upstream_connection_failure_is_502_in_clients_format():
    def respond(request, body):
        raise httpx.ConnectError("connection refused")

    client, _ = _client(Recorder(respond))
    with client:
        r = client.post("/v1/messages", json=MESSAGES)
        o = client.post("/v1/chat/completions", json=CHAT)
    _assert_error(r, "anthropic", 502, "openai/gpt-4o", "could not be reached")
    _assert_error(o, "openai", 502, "could not be reached")


def test_render_shapes():
    assert render(InvalidRequest("bad"), WireFormat.ANTHROPIC_MESSAGES) == {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    out = render(UpstreamStatus(429, "slow"), WireFormat.OPENAI_CHAT)
    assert out["error"]["type"] == "rate_limit_error" and out["error"]["message"] == "slow"


@pytest.mark.parametrize("client_fmt", ["openai", "anthropic"])
def test_upstream_connection_broken_mid_stream_ends_with_error_event(client_fmt):
    async def body():
        yield b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"half"},"finish_reason":null}]}\n\n'
        raise httpx.ReadError("connection reset by peer")

    client, _ = _client(Recorder(lambda request, b: httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})))
    req = {**(CHAT if client_fmt == "openai" else MESSAGES), "stream": True}
    with client:
        r = client.post(PATHS[client_fmt], json=req)
    assert r.status_code == 200 and "half" in r.text
    last = json.loads(r.text.strip().split("\n")[-1][6:])
    assert "broke off" in json.dumps(last) and ("error" in last)


@pytest.mark.parametrize("client_fmt, model, answer, status", [
    ("anthropic", "openai/gpt-4o", {"choices": "not a list"}, 502),  # not a completion: a bad response
    ("anthropic", "openai/gpt-4o", {"choices": [{"message": 7}]}, 502),
    ("openai", "anthropic/claude-x", {"content": [{"type": "text"}], "usage": "many"}, 200),
    ("openai", "anthropic/claude-x", ["not", "an", "object"], 502),
])
def test_misshapen_upstream_answers_are_502_or_tolerated_never_500(client_fmt, model, answer, status):
    client, _ = _client(Recorder(lambda request, body: httpx.Response(200, json=answer)))
    body = {**(CHAT if client_fmt == "openai" else MESSAGES), "model": model}
    with client:
        r = client.post(PATHS[client_fmt], json=body)
    assert r.status_code == status, r.text
    if status == 502:
        _assert_error(r, client_fmt, 502, "upstream")
    else:
        assert (r.json()["content"] == []) if client_fmt == "anthropic" else (r.json()["choices"][0]["message"]["content"] == "")


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
def test_lone_surrogate_escape_is_forwarded_not_a_500(fmt):
    client, rec = _client()
    base = CHAT if fmt == "openai" else MESSAGES
    raw = json.dumps({**base, "messages": [{"role": "user", "content": "x\ud800y"}]}).encode()
    with client:
        r = client.post(PATHS[fmt], content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert "\\ud800" in rec.requests[0].content.decode("ascii")


def test_absurdly_nested_body_is_400():
    client, _ = _client()
    with client:
        r = client.post("/v1/chat/completions", content=b"[" * 100_000 + b"]" * 100_000)
    _assert_error(r, "openai", 400, "nested too deeply")


def test_not_found_and_http_layer_errors_are_classes_not_edited_instances() -> None:
    from runtime.errors import HTTPLayerError, MethodNotAllowed, NotFound, render
    from runtime.wire import WireFormat

    assert render(NotFound("no such session"), WireFormat.OPENAI_CHAT)["error"]["type"] == "not_found_error"
    assert render(NotFound("x"), WireFormat.ANTHROPIC_MESSAGES)["error"]["type"] == "not_found_error"
    assert (NotFound.status, MethodNotAllowed.status) == (404, 405)
    assert [(e.status, e.kind, e.openai_type) for e in (HTTPLayerError(503, "full"), HTTPLayerError(413, "big"), HTTPLayerError(400, "bad"))] == [
        (503, "overloaded_error", "api_error"), (413, "request_too_large", "invalid_request_error"),
        (400, "invalid_request_error", "invalid_request_error")]
    assert HTTPLayerError.status == 500  # the class itself is untouched by its instances


@pytest.mark.parametrize("path, anthropic", [
    ("/v1/messages", True), ("/v1/messages/", True), ("/v1/messages/count_tokens", True), ("/v1/v1/messages", True),
    ("/messages", True), ("/v1/chat/completions", False), ("/chat/completions", False), ("/v1/models", False),
    ("/v1/messagesx", False), (None, False), ("", False)])
def test_one_rule_names_the_error_format_of_a_path(path: str | None, anthropic: bool) -> None:
    from runtime.http.asgi import format_for_path
    from runtime.wire import WireFormat

    assert (format_for_path(path) is WireFormat.ANTHROPIC_MESSAGES) is anthropic
