"""Upstreams that answer 200 with the wrong thing, through a real `archc serve` process: never a success.

The liar (tests/support/fake_upstream.py ``lying``) sends JSON to a streamed request, an event stream
to a non-streamed one, a stream without its terminal event, ``{"foo": 1}``, or an HTML page, in both
wire formats; the client speaks either format, so each lie is seen passed through and translated.
Before any byte reached the client it is a 502 in the client's format with ``bad_response`` in
``x-arch-attempts``, and a configured fallback serves the request instead; a stream cut before its
terminal event ends with the client's error event (its bytes have gone: no fallback is possible).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, lying
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = pytest.mark.e2e

WIRES = {"openai": "openai_chat", "anthropic": "anthropic_messages"}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
STREAM_LIES = ("json_for_stream", "not_a_completion", "html")
PLAIN_LIES = ("sse_for_nonstream", "not_a_completion", "html")


_SAYS = {
    **{(True, lie, wire): f"answered a streamed request with {ctype}, not an event stream"
       for lie, ctype in (("json_for_stream", "application/json"), ("not_a_completion", "application/json"),
                          ("html", "text/html")) for wire in WIRES},
    **{(False, "sse_for_nonstream", wire): "answered 200 with text/event-stream that is not JSON" for wire in WIRES},
    **{(False, "html", wire): "answered 200 with text/html that is not JSON" for wire in WIRES},
    (False, "not_a_completion", "openai"): "answered 200 with JSON that is not a chat completion (choices[].message): "
                                           "an object with keys 'foo'",
    (False, "not_a_completion", "anthropic"): "answered 200 with JSON that is not a message",
}


@pytest.fixture(scope="module")
def liar() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(liar: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Per upstream wire: ``<wire>/liar`` (no fallback) and ``<wire>/liar-fb`` (falls back to
    ``<wire>/good``, an honest upstream on the same fake whose script is empty: its default answer)."""
    honest = FakeUpstream().start()
    providers = []
    for name, wire in WIRES.items():
        endpoint = liar.openai_endpoint() if name == "openai" else liar.anthropic_endpoint()
        good = honest.openai_endpoint() if name == "openai" else honest.anthropic_endpoint()
        providers += [provider(f"{name}/liar", endpoint, wire=wire, default=name == "openai"),
                      provider(f"{name}/liar-fb", endpoint, wire=wire), provider(f"{name}/good", good, wire=wire)]
    # Responses clients passed through to the liar's Responses endpoint (chat clients would use its chat one).
    providers += [provider("responses/liar", liar.openai_endpoint(), responses_endpoint=liar.responses_endpoint()),
                  provider("responses/liar-fb", liar.openai_endpoint(), responses_endpoint=liar.responses_endpoint()),
                  provider("responses/good", honest.openai_endpoint(), responses_endpoint=honest.responses_endpoint())]
    gateway_ext = {"fallbacks": {f"{name}/liar-fb": [f"{name}/good"] for name in [*WIRES, "responses"]}}
    path = write_bundle(tmp_path_factory.mktemp("liars"), bundle_dict(providers, extensions={"gateway": gateway_ext}))
    gw = Gateway(path, args=["--log-level", "warning"])
    gw.start()
    yield gw
    gw.close()
    honest.stop()


def _body(client: str, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if client == "anthropic":
        body["max_tokens"] = 32
    return body


def _error_message(client: str, answer: dict[str, Any]) -> str:
    if client == "anthropic":
        assert answer["type"] == "error" and answer["error"]["type"] == "api_error"
    else:
        assert answer["error"]["type"] == "api_error"
    return answer["error"]["message"]


def _events(client: str, text: str) -> list[Any]:
    """The data of each SSE event (JSON decoded, ``[DONE]`` kept as text)."""
    out = []
    for block in text.split("\n\n"):
        data = "".join(line[5:].strip() for line in block.split("\n") if line.startswith("data:"))
        if data:
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("fallback", [False, True], ids=["alone", "with-fallback"])
@pytest.mark.parametrize("stream, lie", [(True, lie) for lie in STREAM_LIES] + [(False, lie) for lie in PLAIN_LIES])
@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_lie_before_the_first_byte_is_a_bad_response_that_falls_back(gateway, liar, client, wire, stream, lie, fallback):
    liar.reset()
    liar.script(lying(lie))
    model = f"{wire}/liar-fb" if fallback else f"{wire}/liar"
    r = httpx.post(gateway.url + PATHS[client], json=_body(client, model, stream), headers={"authorization": "Bearer x"},
                   timeout=30)
    assert len(liar.requests) == 1  # the liar was asked once (no retry policy here)
    attempts = r.headers["x-arch-attempts"]
    if not fallback:
        assert r.status_code == 502, r.text
        assert r.headers["content-type"].startswith("application/json")
        message = _error_message(client, r.json())
        assert message.startswith(f"upstream '{wire}/liar' answered ")
        assert _SAYS[(stream, lie, wire)] in message, message
        assert attempts == f"{wire}/liar=bad_response"
        return
    assert r.status_code == 200, r.text
    assert attempts == f"{wire}/liar-fb=bad_response, {wire}/good=ok"
    assert r.headers["x-arch-target"] == f"{wire}/good"
    if stream:
        events = _events(client, r.text)
        assert events[-1] == "[DONE]" if client == "openai" else events[-1]["type"] == "message_stop"
    else:
        answer = r.json()
        assert answer["choices"][0]["message"]["content"] if client == "openai" else answer["content"][0]["text"]


@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_stream_cut_before_its_terminal_event_ends_with_the_client_error_event(gateway, liar, client, wire):
    liar.reset()
    liar.script(lying("truncated"))
    r = httpx.post(gateway.url + PATHS[client], json=_body(client, f"{wire}/liar-fb", True),
                   headers={"authorization": "Bearer x"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(client, r.text)
    assert "[DONE]" not in events and not any(isinstance(e, dict) and e.get("type") == "message_stop" for e in events)
    last = events[-1]
    terminal = "[DONE]" if wire == "openai" else "message_stop"
    expected = f"the upstream's stream ended before {'data: ' if wire == 'openai' else ''}{terminal}: the answer is incomplete"
    if client == "anthropic":
        assert "event: error\n" in r.text
        assert last == {"type": "error", "error": {"type": "api_error", "message": expected}}
    else:
        assert last["error"]["message"] == expected
    assert len(events) > 1  # what the liar sent before it stopped reached the client first


def test_sdks_raise_on_a_lie_instead_of_returning_an_empty_answer(gateway, liar):
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    liar.reset()
    liar.script(lying("not_a_completion"))
    with pytest.raises(openai.InternalServerError) as err:
        oai.chat.completions.create(model="anthropic/liar", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and "is not a message" in str(err.value)

    liar.reset()
    liar.script(lying("truncated"))
    with pytest.raises(openai.APIError, match="ended before data: \\[DONE\\]"):
        for _ in oai.chat.completions.create(model="openai/liar", messages=[{"role": "user", "content": "hi"}], stream=True):
            pass

    ant = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    liar.reset()
    liar.script(lying("json_for_stream"))
    with pytest.raises(anthropic.InternalServerError) as aerr:
        with ant.messages.stream(model="openai/liar", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
    assert aerr.value.status_code == 502 and "not an event stream" in str(aerr.value)

    liar.reset()
    liar.script(lying("truncated"))
    with pytest.raises(anthropic.APIStatusError, match="ended before message_stop"):
        with ant.messages.stream(model="anthropic/liar", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()


_RESPONSES_SAYS = {
    (True, "json_for_stream"): "answered a streamed request with application/json, not an event stream",
    (True, "not_a_completion"): "answered a streamed request with application/json, not an event stream",
    (True, "html"): "answered a streamed request with text/html, not an event stream",
    (False, "sse_for_nonstream"): "answered 200 with text/event-stream that is not JSON",
    (False, "html"): "answered 200 with text/html that is not JSON",
    (False, "not_a_completion"): "answered 200 with JSON that is not a response (object \"response\" with output[]): "
                                 "an object with keys 'foo'",
}


@pytest.mark.parametrize("fallback", [False, True], ids=["alone", "with-fallback"])
@pytest.mark.parametrize("stream, lie", [(True, lie) for lie in STREAM_LIES] + [(False, lie) for lie in PLAIN_LIES])
def test_a_responses_upstream_lie_is_a_bad_response_that_falls_back(gateway, liar, stream, lie, fallback):
    """Passed through (a Responses client, a Responses upstream): the same checks as the other wires."""
    liar.reset()
    liar.script(lying(lie))
    model = "responses/liar-fb" if fallback else "responses/liar"
    r = httpx.post(gateway.url + "/v1/responses", json={"model": model, "input": "hi", "stream": stream}, timeout=30)
    assert [q.path for q in liar.requests] == ["/v1/responses"]
    if not fallback:
        assert r.status_code == 502 and r.json()["error"]["type"] == "api_error", r.text
        message = r.json()["error"]["message"]
        assert message.startswith("upstream 'responses/liar' answered ") and _RESPONSES_SAYS[(stream, lie)] in message, message
        assert r.headers["x-arch-attempts"] == "responses/liar=bad_response"
        return
    assert r.status_code == 200, r.text
    assert r.headers["x-arch-attempts"] == "responses/liar-fb=bad_response, responses/good=ok"
    if stream:
        assert _events("openai", r.text)[-1]["type"] == "response.completed"
    else:
        assert r.json()["output"][0]["content"][0]["text"] == "ok"


def test_a_responses_stream_cut_before_its_end_ends_with_an_error_event(gateway, liar):
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    liar.reset()
    liar.script(lying("truncated"))
    r = httpx.post(gateway.url + "/v1/responses", json={"model": "responses/liar-fb", "input": "hi", "stream": True}, timeout=30)
    events = _events("openai", r.text)
    expected = "the upstream's stream ended before response.completed: the answer is incomplete"
    assert r.status_code == 200 and events[0]["type"] == "response.created"
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"] and events[-2]["message"] == expected
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # numbered on from the upstream's
    assert events[-1]["response"]["id"] == events[0]["response"]["id"] and events[-1]["response"]["status"] == "failed"
    assert not any(e["type"] == "response.completed" for e in events)
    liar.reset()
    liar.script(lying("truncated"))
    with oai.responses.stream(model="responses/liar", input="hi") as stream:
        seen = list(stream)
        with pytest.raises(RuntimeError, match="response.completed"):  # the SDK's own accumulator refuses it
            stream.get_final_response()
    assert seen[-1].type == "response.failed" and seen[-1].response.error.message == expected
