"""Streams are judged before they are committed, through a real `archc serve`: a stream whose first
event does not parse in the upstream's wire format (or is an error event) is ``bad_response`` before
the 200 goes out, so the fallback serves it; ``: ping`` comments and CRLF lines before the first
event are fine; an OpenAI stream that finished without ``data: [DONE]`` is whole, passed through
and translated; a translated stream's closing events go out as soon as the upstream's answer is in,
not when its connection ends."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_upstream import ANTHROPIC, FakeUpstream, Response, default_reply
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = pytest.mark.e2e

WIRES = {"openai": "openai_chat", "anthropic": "anthropic_messages"}


def raw_stream(body: bytes):
    return lambda fmt, req: Response(raw=body, content_type="text/event-stream")


def first_event(kind: str):
    """A reply whose start is broken in one way, in the request's format."""
    def reply(fmt: str, body: Any) -> Response:
        good = default_reply(fmt, body)
        lines = b"".join((f"event: {e}\n" if e else "").encode() + f"data: {d}\n\n".encode() for e, d in good.events or [])
        if kind == "garbage":
            return Response(raw=b"data: <html>oops</html>\n\n" + lines, content_type="text/event-stream")
        if kind == "error_event":
            err = (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
                   if fmt == ANTHROPIC else b'data: {"error":{"message":"model is loading","type":"server_error"}}\n\n')
            return Response(raw=err, content_type="text/event-stream")
        if kind == "done_first":
            return Response(raw=b"data: [DONE]\n\n", content_type="text/event-stream")
        if kind == "pings_crlf":
            return Response(raw=b": ping\r\n\r\n: ping\r\n\r\n" + lines.replace(b"\n", b"\r\n"), content_type="text/event-stream")
        if kind == "no_done":
            assert lines.endswith(b"data: [DONE]\n\n")
            return Response(raw=lines[: -len(b"data: [DONE]\n\n")], content_type="text/event-stream")
        raise AssertionError(kind)
    return reply


@pytest.fixture(scope="module")
def ups() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream() as bad, FakeUpstream() as good:
        yield bad, good


@pytest.fixture(scope="module")
def gw(ups, tmp_path_factory) -> Iterator[Gateway]:
    bad, good = ups
    providers, fallbacks = [], {}
    for name, wire in WIRES.items():
        at = bad.openai_endpoint() if name == "openai" else bad.anthropic_endpoint()
        spare = good.openai_endpoint() if name == "openai" else good.anthropic_endpoint()
        providers += [provider(f"{name}/bad", at, wire=wire, default=name == "openai"), provider(f"{name}/spare", spare, wire=wire)]
        fallbacks[f"{name}/bad"] = [f"{name}/spare"]
    bundle = bundle_dict(providers, extensions={"gateway": {"fallbacks": fallbacks}})
    with Gateway(write_bundle(tmp_path_factory.mktemp("start"), bundle)) as gateway:
        yield gateway


def _stream(gw: Gateway, client: str, model: str) -> tuple[httpx.Response, str]:
    if client == "openai":
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        path = "/v1/chat/completions"
    else:
        body = {"model": model, "stream": True, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
        path = "/v1/messages"
    with httpx.stream("POST", gw.url + path, json=body, timeout=30) as r:
        return r, r.read().decode()


# [DONE] is OpenAI's sentinel: for an Anthropic upstream "garbage" covers a first event that is not JSON.
BAD_STARTS = [(kind, client, upstream) for kind in ("garbage", "error_event", "done_first") for client in WIRES
              for upstream in WIRES if not (kind == "done_first" and upstream == "anthropic")]


@pytest.mark.parametrize("kind,client,upstream", BAD_STARTS)
def test_a_bad_first_event_falls_back(ups, gw, kind, client, upstream) -> None:
    bad, good = ups
    bad.reset(); good.reset()
    bad.script(first_event(kind))
    r, text = _stream(gw, client, f"{upstream}/bad")
    assert r.status_code == 200
    assert r.headers["x-arch-attempts"] == f"{upstream}/bad=bad_response, {upstream}/spare=ok"
    assert "oops" not in text and "Overloaded" not in text and '"error"' not in text
    assert len(good.requests) == 1


@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("upstream", ["openai", "anthropic"])
def test_pings_and_crlf_before_the_first_event_are_fine(ups, gw, client, upstream) -> None:
    bad, _ = ups
    bad.reset()
    bad.script(first_event("pings_crlf"))
    r, text = _stream(gw, client, f"{upstream}/bad")
    assert r.status_code == 200 and r.headers["x-arch-attempts"] == f"{upstream}/bad=ok"
    assert '"error"' not in text


def test_without_a_fallback_the_client_gets_502_in_its_format(ups, tmp_path) -> None:
    bad, _ = ups
    bundle = bundle_dict([provider("openai/bad", bad.openai_endpoint(), default=True)])
    with Gateway(write_bundle(tmp_path, bundle)) as gw:
        bad.reset()
        bad.script(first_event("garbage"))
        r, text = _stream(gw, "anthropic", "openai/bad")
    assert r.status_code == 502
    body = json.loads(text)
    assert body["type"] == "error" and "began with an event that is not JSON" in body["error"]["message"]


def test_openai_stream_finished_without_done_is_whole(ups, gw) -> None:
    bad, _ = ups
    bad.reset()
    bad.script(first_event("no_done"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
        model="openai/bad", stream=True, messages=[{"role": "user", "content": "hi"}]) if c.choices]
    assert "".join(p or "" for p in pieces) == "ok"
    bad.script(first_event("no_done"))
    r, text = _stream(gw, "openai", "openai/bad")
    assert '"error"' not in text and "[DONE]" not in text  # passed through as it came: whole, no error appended
    bad.script(first_event("no_done"))
    ant = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    with ant.messages.stream(model="openai/bad", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as s:
        message = s.get_final_message()
    assert message.content[0].text == "ok" and message.stop_reason == "end_turn"


def held_open(fmt: str, body: Any) -> Response:
    """The whole answer, terminal event included, then the stream stays open (a server slow to end its body)."""
    return replace(default_reply(fmt, body), hold_open=True)


def test_a_translated_stream_ends_when_the_answer_is_in_not_when_the_upstream_closes(ups, gw) -> None:
    # A Responses client on a chat upstream: response.completed follows [DONE] at once.
    bad, _ = ups
    bad.reset()
    bad.script(held_open)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=10)
    kinds = []
    with client.responses.create(model="openai/bad", input="hi", stream=True) as events:
        for event in events:
            kinds.append(event.type)
            if event.type == "response.completed":
                assert event.response.output_text == "ok"
                break
    assert kinds[-1] == "response.completed" and "response.output_text.done" in kinds
    # An OpenAI chat client on an Anthropic upstream: the finish, usage and [DONE] follow message_stop at once.
    bad.script(held_open)
    body = {"model": "anthropic/bad", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}
    lines = []
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=10) as r:
        for line in r.iter_lines():
            lines.append(line)
            if line == "data: [DONE]":
                break
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert chunks[-1]["usage"]["completion_tokens"] > 0 and lines[-1] == "data: [DONE]"
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)
