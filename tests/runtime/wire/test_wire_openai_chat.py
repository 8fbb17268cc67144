"""runtime/wire/openai_chat.py: request validation (fixture-driven), text_of, usage, error events, passthrough."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import InvalidRequest, UpstreamStatus, render
from runtime.wire.sse import SSEDecoder
from runtime.wire import WireFormat
from runtime.wire import openai_chat as oc

OPENAI = Path(__file__).resolve().parents[2] / "fixtures" / "wire" / "openai_chat"
INVALID = sorted((OPENAI / "invalid").glob("*.json"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(OPENAI.glob("*.request.json")), ids=lambda p: p.name)
def test_recorded_requests_are_valid_and_returned_unchanged(path: Path) -> None:
    body = _load(path)
    assert oc.validate_request(body) is body
    assert body == _load(path)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_requests_name_the_bad_field(path: Path) -> None:
    case = _load(path)
    with pytest.raises(InvalidRequest) as caught:
        oc.validate_request(case["body"])
    assert caught.value.message.startswith(case["path"] + ": "), caught.value.message
    assert caught.value.status == 400
    body = render(caught.value, WireFormat.OPENAI_CHAT)
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"] == caught.value.message


def test_content_type_message_wording() -> None:
    case = _load(OPENAI / "invalid" / "content_wrong_type.json")
    with pytest.raises(InvalidRequest, match=r"^messages\[2\]\.content: expected string or array of content parts, got integer$"):
        oc.validate_request(case["body"])


def test_unknown_fields_and_nulls_are_allowed() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi", "x_vendor": 1}, {"role": "assistant", "content": None, "tool_calls": None}],
        "temperature": None,
        "max_tokens": None,
        "stop": None,
        "future_feature": {"on": True},
    }
    assert oc.validate_request(body) is body


def test_text_of() -> None:
    assert oc.text_of({"role": "user", "content": "plain"}) == "plain"
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "https://x"}}, {"type": "text", "text": "b"}]
    assert oc.text_of({"role": "user", "content": parts}) == "a\nb"
    assert oc.text_of({"role": "assistant", "content": None, "tool_calls": []}) == ""
    request = _load(OPENAI / "images.request.json")
    assert oc.text_of(request["messages"][0]) == "What's in these images?"


def test_usage_from_response_and_chunks() -> None:
    assert oc.usage_from_response(_load(OPENAI / "text_cached.response.json")) == (1219, 10)
    assert oc.usage_from_response({"choices": []}) == (0, 0)
    decoder = SSEDecoder()
    events = decoder.feed((OPENAI / "text_usage.stream.sse").read_bytes()) + decoder.flush()
    chunks = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    usages = [oc.usage_from_chunk(c) for c in chunks]
    assert usages[-1] == (1219, 9) and all(u is None for u in usages[:-1])


def test_error_event_for_an_openai_client() -> None:
    error = UpstreamStatus(429, "upstream rate limited")
    frame = oc.error_event(render(error, WireFormat.OPENAI_CHAT))
    events = SSEDecoder().feed(frame)
    assert len(events) == 1 and events[0].event is None
    assert json.loads(events[0].data)["error"] == {"message": "upstream rate limited", "type": "rate_limit_error", "param": None, "code": None}
    assert oc.error_event({"message": "bare"}) == b'data: {"error":{"message":"bare"}}\n\n'


def test_with_model_keeps_unknown_fields() -> None:
    body = _load(OPENAI / "tools_parallel_results.request.json")
    out = oc.with_model(body, "deepseek-chat")
    assert out["model"] == "deepseek-chat" and out["response_format"] == body["response_format"] and body["model"] == "gpt-4o"


def test_reasoning_of_reads_both_vendor_names() -> None:
    assert oc.reasoning_of({"reasoning_content": "a"}) == "a"
    assert oc.reasoning_of({"reasoning": "b"}) == "b"
    assert oc.reasoning_of({"content": "c"}) is None
