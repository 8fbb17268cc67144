"""Anthropic Messages <-> OpenAI chat translation, driven by the recorded fixtures in tests/fixtures/wire/.

A new case is a new file: ``anthropic_messages/<case>.{request,response}.json`` or ``<case>.stream.sse``
(Anthropic in, OpenAI expected beside it as ``<case>.<kind>.openai.*``) and the same under
``openai_chat/`` with ``<case>.<kind>.anthropic.*``. ``ARCHC_REGEN_WIRE=1`` rewrites expected files
(review the diff before committing). Streams are also replayed through the real SDKs' accumulators.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2  # the anthropic SDK's own HTTP client package (a dependency of `anthropic`)
import openai
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from anthropic.types import Message
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from runtime.errors import GatewayError, InvalidRequest, TranslationError, UpstreamStatus, render
from runtime.wire.sse import DONE, SSEDecoder, encode_json
from runtime.wire import WireFormat
from runtime.wire import anthropic_messages as am
from runtime.wire import openai_chat as oc

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
ANTHROPIC = WIRE / "anthropic_messages"
OPENAI = WIRE / "openai_chat"
REGEN = os.environ.get("ARCHC_REGEN_WIRE") == "1"
CLIENT_MODEL = "client-model"
CREATED = 1764115200


def _cases(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _expect_json(path: Path, actual: Any) -> None:
    if REGEN:
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"missing expected file {path.name} (run with ARCHC_REGEN_WIRE=1, then review it)"
    assert actual == _load(path)


def _expect_text(path: Path, actual: str) -> None:
    if REGEN:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing expected file {path.name} (run with ARCHC_REGEN_WIRE=1, then review it)"
    assert actual == path.read_text(encoding="utf-8")


def _sse_events(raw: bytes) -> list[Any]:
    decoder = SSEDecoder()
    return decoder.feed(raw) + decoder.flush()


def _anthropic_stream_to_openai(raw: bytes, *, include_usage: bool = True) -> list[dict[str, Any]]:
    stream = am.StreamToOpenAI(CLIENT_MODEL, created=CREATED, include_usage=include_usage)
    chunks: list[dict[str, Any]] = []
    for event in _sse_events(raw):
        chunks += stream.feed(event.event or "", json.loads(event.data))
    return chunks + stream.finish()


def _openai_stream_to_anthropic(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    stream = am.StreamFromOpenAI(CLIENT_MODEL)
    events: list[tuple[str, dict[str, Any]]] = []
    for event in _sse_events(raw):
        if event.data == "[DONE]":
            break
        events += stream.feed(json.loads(event.data))
    return events + stream.finish()


# --- requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases(ANTHROPIC, ".request.json"))
def test_request_to_openai(case: str) -> None:
    body = am.validate_request(_load(ANTHROPIC / f"{case}.request.json"))
    converted = am.request_to_openai(body)
    oc.validate_request(converted)  # the translation is a valid OpenAI request
    _expect_json(ANTHROPIC / f"{case}.request.openai.json", converted)


@pytest.mark.parametrize("case", _cases(OPENAI, ".request.json"))
def test_request_from_openai(case: str) -> None:
    body = oc.validate_request(_load(OPENAI / f"{case}.request.json"))
    error_file = OPENAI / f"{case}.request.anthropic.error.json"
    if error_file.exists():
        expected = _load(error_file)
        with pytest.raises(GatewayError) as caught:
            am.request_from_openai(body)
        assert (type(caught.value).__name__, caught.value.status, caught.value.code) == (expected["class"], expected["status"], expected["code"])
        return
    converted = am.request_from_openai(body)
    am.validate_request(converted)  # the translation is a valid Anthropic request
    _expect_json(OPENAI / f"{case}.request.anthropic.json", converted)


def test_tool_results_come_before_user_text_and_keep_errors_and_images() -> None:
    out = am.request_to_openai(_load(ANTHROPIC / "tool_results.request.json"))
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "tool", "user"]
    assert [c["function"]["name"] for c in out["messages"][1]["tool_calls"]] == ["get_weather", "get_weather", "screenshot"]
    assert out["messages"][3]["content"] == "Error: Unknown location: Atlantis"
    last = out["messages"][5]["content"]
    assert [p["type"] for p in last] == ["text", "image_url", "text"]
    assert last[1]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    assert [t["function"]["name"] for t in out["tools"]] == ["get_weather", "screenshot"]  # server tool dropped
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is True


def test_plain_user_text_blocks_go_out_as_they_are_and_anything_else_is_rewritten() -> None:
    """A user turn of plain text blocks ({type, text}) is already OpenAI's text parts: the list goes out
    as it is (a 1 MB agent history is mostly these); a block carrying more (cache_control) is rewritten."""
    plain = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    cached = [{"type": "text", "text": "three", "cache_control": {"type": "ephemeral"}}]
    out = am.request_to_openai({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": plain}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": cached}]})
    assert out["messages"][0] == {"role": "user", "content": plain} and out["messages"][0]["content"] is plain
    assert out["messages"][2] == {"role": "user", "content": [{"type": "text", "text": "three"}]}
    assert plain == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]  # the client's body is not written to


def test_claude_code_request_keeps_what_openai_can_carry() -> None:
    body = _load(ANTHROPIC / "claude_code.request.json")
    out = am.request_to_openai(body)
    assert not {"thinking", "context_management", "output_config", "metadata"} & set(out)
    assert out["user"] == hashlib.sha256(body["metadata"]["user_id"].encode()).hexdigest()  # OpenAI caps `user` at 64
    assert out["stream_options"] == {"include_usage": True} and out["max_tokens"] == 64000
    assert out["messages"][0]["role"] == "system" and out["messages"][-1]["role"] == "system"
    assert "cache_control" not in json.dumps(out)
    bash = out["tools"][0]["function"]
    assert bash["parameters"] == body["tools"][0]["input_schema"]
    assert out["messages"][2]["reasoning_signature"] == body["messages"][1]["content"][0]["signature"]


def test_stop_sequences_beyond_openais_four_are_dropped() -> None:
    body = {**_load(ANTHROPIC / "stop_sequences.request.json"), "stop_sequences": ["a", "b", "c", "d", "e"]}
    assert am.request_to_openai(body)["stop"] == ["a", "b", "c", "d"]


def test_mid_conversation_system_can_be_folded_into_the_first_message() -> None:
    body = _load(ANTHROPIC / "system_mid_conversation.request.json")
    out = am.request_to_openai(body, system_in_place=False)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "user"]
    assert out["messages"][0]["content"] == "You are a careful coding assistant.\n\nAnswer in English.\n\nThe user switched to plan mode: do not edit files."
    assert am.request_to_openai(body)["messages"][3] == {"role": "system", "content": "The user switched to plan mode: do not edit files."}


def test_thinking_signatures_and_redacted_thinking_round_trip_verbatim() -> None:
    body = _load(ANTHROPIC / "thinking_signature.request.json")
    back = am.request_from_openai(am.request_to_openai(body))
    assistant_turns = [m for m in body["messages"] if m["role"] == "assistant"]
    assert [m["content"] for m in back["messages"] if m["role"] == "assistant"] == [t["content"] for t in assistant_turns]


def test_reasoning_content_and_bad_arguments_toward_anthropic() -> None:
    out = am.request_from_openai(_load(OPENAI / "reasoning.request.json"))
    first = out["messages"][1]["content"]
    assert first[0] == {"type": "thinking", "thinking": "Compare the tenths: 8 > 1, so 9.8 is greater.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}
    assert [b["type"] for b in out["messages"][3]["content"]] == ["tool_use"]  # unsigned reasoning is dropped
    tool_use = out["messages"][3]["content"][-1]
    assert tool_use["input"] == {"_raw": '{"word": "strawberry", "letter": "r"'}
    assert tool_use["id"] == "call_0_6c3d7b1e-90af-4c47-a1e2-ff0d1c0a9b31"
    assert out["stop_sequences"] == ["\n\nUser:"]  # whitespace-only stops are rejected by Anthropic
    assert out["tool_choice"] == {"type": "tool", "name": "count_letters"}


def test_tool_messages_merge_into_one_user_turn() -> None:
    out = am.request_from_openai(_load(OPENAI / "tools_parallel_results.request.json"))
    turn = out["messages"][2]
    assert turn["role"] == "user"
    assert [b["type"] for b in turn["content"]] == ["tool_result", "tool_result", "tool_result", "text"]
    assert turn["content"][1] == {"type": "tool_result", "tool_use_id": "call_RpEDoB8O0FTL9JoKTuCVFOyR", "is_error": True, "content": "unknown location Atlantis"}
    assert out["system"] == "You are a weather bot." and out["temperature"] == 1.0
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "response_format" not in out and "seed" not in out
    assert out["metadata"]["user_id"] == hashlib.sha256(b"jane.doe@example.com").hexdigest()  # Anthropic rejects emails


# --- responses --------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases(ANTHROPIC, ".response.json"))
def test_response_to_openai(case: str) -> None:
    converted = am.response_to_openai(_load(ANTHROPIC / f"{case}.response.json"), model=CLIENT_MODEL, created=CREATED)
    ChatCompletion.model_validate(converted)  # the openai SDK accepts it
    _expect_json(ANTHROPIC / f"{case}.response.openai.json", converted)


@pytest.mark.parametrize("case", _cases(OPENAI, ".response.json"))
def test_response_from_openai(case: str) -> None:
    converted = am.response_from_openai(_load(OPENAI / f"{case}.response.json"), model=CLIENT_MODEL)
    Message.model_validate(converted)  # the anthropic SDK accepts it
    _expect_json(OPENAI / f"{case}.response.anthropic.json", converted)


def test_usage_with_cache_tokens_both_ways() -> None:
    resp = _load(ANTHROPIC / "text_cache_usage.response.json")
    usage = am.response_to_openai(resp, model="m")["usage"]
    assert usage["prompt_tokens"] == 21 + 188 + 1024 and usage["prompt_tokens_details"]["cached_tokens"] == 1024
    back = am.response_from_openai(am.response_to_openai(resp, model="m"), model="m")["usage"]
    assert back == {k: resp["usage"][k] for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}


def test_thinking_response_round_trips_through_the_pivot() -> None:
    resp = _load(ANTHROPIC / "thinking.response.json")
    back = am.response_from_openai(am.response_to_openai(resp, model="m"), model="m")
    assert back["content"] == resp["content"] and back["stop_reason"] == "end_turn"


# --- streams ----------------------------------------------------------------------------


def _anthropic_stream_cases() -> list[str]:
    return [c for c in _cases(ANTHROPIC, ".stream.sse") if not (ANTHROPIC / f"{c}.stream.openai.error.json").exists()]


@pytest.mark.parametrize("case", _cases(ANTHROPIC, ".stream.sse"))
def test_stream_to_openai(case: str) -> None:
    raw = (ANTHROPIC / f"{case}.stream.sse").read_bytes()
    error_file = ANTHROPIC / f"{case}.stream.openai.error.json"
    if error_file.exists():
        expected = _load(error_file)
        with pytest.raises(GatewayError) as caught:
            _anthropic_stream_to_openai(raw)
        assert (type(caught.value).__name__, caught.value.status) == (expected["class"], expected["status"])
        return
    chunks = _anthropic_stream_to_openai(raw)
    wire = b"".join(encode_json(c) for c in chunks) + DONE
    _expect_text(ANTHROPIC / f"{case}.stream.openai.sse", wire.decode("utf-8"))


@pytest.mark.parametrize("case", _anthropic_stream_cases())
def test_stream_to_openai_agrees_with_the_non_streamed_translation(case: str) -> None:
    raw = (ANTHROPIC / f"{case}.stream.sse").read_bytes()
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in _sse_events(raw):
        data = json.loads(event.data)
        if data["type"] != "ping":
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    expected = am.response_to_openai(snapshot.to_dict(), model=CLIENT_MODEL, created=CREATED)

    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in _anthropic_stream_to_openai(raw):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    final = state.current_completion_snapshot.to_dict()
    got, want = final["choices"][0], expected["choices"][0]
    assert got["finish_reason"] == want["finish_reason"]
    assert (got["message"].get("content") or None) == want["message"]["content"]  # the first chunk says content ""
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in got["message"].get("tool_calls") or []] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in want["message"].get("tool_calls") or []
    ]
    assert final["usage"] == expected["usage"]
    assert final["id"] == expected["id"] and final["model"] == CLIENT_MODEL


def test_stream_to_openai_reasoning_and_signature() -> None:
    chunks = _anthropic_stream_to_openai((ANTHROPIC / "thinking.stream.sse").read_bytes())
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert reasoning.startswith("Let me solve this step by step") and reasoning.endswith("400 + 50 + 3")
    assert [d["reasoning_signature"] for d in deltas if "reasoning_signature" in d] == ["EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds7W9GZ+gyiB7ay3LT8iYA1fKqWs6Oj02rqUQfAWkrpTBhHEpGEPMbo8EJiqEBJd4oWdd+mTVBq8bNQBv4IQUFvHzQw=="]


def test_stream_to_openai_without_include_usage_sends_no_usage_chunk() -> None:
    chunks = _anthropic_stream_to_openai((ANTHROPIC / "text_cache_usage.stream.sse").read_bytes(), include_usage=False)
    assert all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
    assert len({c["id"] for c in chunks}) == 1


def test_stream_to_openai_upstream_error_raises_with_the_upstream_status() -> None:
    raw = (ANTHROPIC / "overloaded_error.stream.sse").read_bytes()
    stream = am.StreamToOpenAI(CLIENT_MODEL, created=CREATED)
    sent: list[dict[str, Any]] = []
    with pytest.raises(UpstreamStatus) as caught:
        for event in _sse_events(raw):
            sent += stream.feed(event.event or "", json.loads(event.data))
    assert caught.value.status == 529 and caught.value.kind == "overloaded_error"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in sent) == "Partial answer"
    frame = oc.error_event(render(caught.value, WireFormat.OPENAI_CHAT))
    assert frame.startswith(b"data: {\"error\":") and frame.endswith(b"\n\n")


@pytest.mark.parametrize("case", _cases(OPENAI, ".stream.sse"))
def test_stream_from_openai(case: str) -> None:
    events = _openai_stream_to_anthropic((OPENAI / f"{case}.stream.sse").read_bytes())
    wire = b"".join(encode_json(data, event=name) for name, data in events)
    _expect_text(OPENAI / f"{case}.stream.anthropic.sse", wire.decode("utf-8"))


def _check_lifecycle(events: list[tuple[str, dict[str, Any]]]) -> None:
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_start") == names.count("message_delta") == names.count("message_stop") == 1
    open_index, next_index = None, 0
    for name, data in events:
        assert data["type"] == name
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index, "blocks must not overlap"
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name in ("message_delta", "message_stop"):
            assert open_index is None


def _accumulate_openai(raw: bytes) -> dict[str, Any]:
    """A minimal chunk accumulator (content, reasoning, tool calls by index, finish, usage)."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict[str, Any]] = {}
    out: dict[str, Any] = {"choices": [{"index": 0, "message": message, "finish_reason": None}]}
    for event in _sse_events(raw):
        if event.data == "[DONE]":
            break
        chunk = json.loads(event.data)
        out["id"] = chunk["id"]
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if delta.get("content"):
                message["content"] = (message["content"] or "") + delta["content"]
            if delta.get("reasoning_content"):
                message["reasoning_content"] = message.get("reasoning_content", "") + delta["reasoning_content"]
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                slot["id"] = call.get("id") or slot["id"]
                slot["function"]["name"] = call.get("function", {}).get("name") or slot["function"]["name"]
                slot["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            out["choices"][0]["finish_reason"] = choice.get("finish_reason") or out["choices"][0]["finish_reason"]
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return out


@pytest.mark.parametrize("case", _cases(OPENAI, ".stream.sse"))
def test_stream_from_openai_is_a_valid_lifecycle_that_agrees_with_the_non_streamed_translation(case: str) -> None:
    raw = (OPENAI / f"{case}.stream.sse").read_bytes()
    events = _openai_stream_to_anthropic(raw)
    _check_lifecycle(events)
    snapshot = None
    buffers: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    expected = am.response_from_openai(_accumulate_openai(raw), model=CLIENT_MODEL)
    got = snapshot.to_dict()
    assert got["content"] == expected["content"]
    assert (got["stop_reason"], got["usage"]["output_tokens"], got["id"], got["model"]) == (
        expected["stop_reason"], expected["usage"]["output_tokens"], expected["id"], CLIENT_MODEL)


def test_stream_from_openai_interleaved_parallel_calls_become_whole_blocks() -> None:
    events = _openai_stream_to_anthropic((OPENAI / "tool_calls_interleaved.stream.sse").read_bytes())
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [(b["id"], b["name"]) for b in starts] == [("call_a1", "read_file"), ("call_b2", "list_dir")]
    partial = {}
    for name, data in events:
        if name == "content_block_delta":
            partial[data["index"]] = partial.get(data["index"], "") + data["delta"]["partial_json"]
    assert [json.loads(partial[i]) for i in sorted(partial)] == [{"path": "a.py"}, {"dir": "."}]


def test_stream_from_openai_streams_sequential_calls_live() -> None:
    events = _openai_stream_to_anthropic((OPENAI / "tool_calls_split.stream.sse").read_bytes())
    per_block: dict[int, int] = {}
    for name, data in events:
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            per_block[data["index"]] = per_block.get(data["index"], 0) + 1
    assert per_block == {1: 11, 2: 3}  # every upstream argument delta is forwarded as it came


def test_stream_from_openai_does_not_delay_text() -> None:
    stream = am.StreamFromOpenAI(CLIENT_MODEL)
    first = stream.feed({"id": "chatcmpl-x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]})
    assert [n for n, _ in first] == ["message_start", "content_block_start", "content_block_delta"]
    assert first[-1][1]["delta"] == {"type": "text_delta", "text": "Hi"}
    assert stream.finish()[-1][0] == "message_stop" and stream.finish() == []


def test_stream_from_openai_reads_list_content_parts() -> None:
    stream = am.StreamFromOpenAI(CLIENT_MODEL)
    events = stream.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "finish_reason": None}]})
    assert events[-1][1]["delta"] == {"type": "text_delta", "text": "ab"}


def test_stream_from_openai_mid_stream_error_raises() -> None:
    stream = am.StreamFromOpenAI(CLIENT_MODEL)
    stream.feed({"id": "chatcmpl-x", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]})
    with pytest.raises(UpstreamStatus) as caught:
        stream.feed({"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": 429}})
    assert caught.value.status == 429
    frame = am.error_event(render(caught.value, WireFormat.ANTHROPIC_MESSAGES))
    assert frame.startswith(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"")


def test_stream_byte_splits_do_not_change_the_translation() -> None:
    raw = (OPENAI / "tool_calls_split.stream.sse").read_bytes()
    stream = am.StreamFromOpenAI(CLIENT_MODEL)
    decoder = SSEDecoder()
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(len(raw)):
        for event in decoder.feed(raw[i : i + 1]):
            if event.data != "[DONE]":
                events += stream.feed(json.loads(event.data))
    events += stream.finish()
    assert events == _openai_stream_to_anthropic(raw)


def test_translation_error_is_an_invalid_request() -> None:
    with pytest.raises(TranslationError) as caught:
        am.request_from_openai(_load(OPENAI / "n_choices.request.json"))
    assert caught.value.status == 400
    assert render(caught.value, WireFormat.OPENAI_CHAT)["error"]["type"] == "invalid_request_error"


def test_with_model_changes_only_the_model() -> None:
    body = _load(ANTHROPIC / "claude_code.request.json")
    out = am.with_model(body, "gpt-5")
    assert out["model"] == "gpt-5" and {k: v for k, v in out.items() if k != "model"} == {k: v for k, v in body.items() if k != "model"}
    assert body["model"] == "claude-opus-4-8"


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(ANTHROPIC.glob("*.request.json")), ids=lambda p: p.name)
def test_recorded_requests_are_valid_and_returned_unchanged(path: Path) -> None:
    body = _load(path)
    assert am.validate_request(body) is body and body == _load(path)


@pytest.mark.parametrize("path", sorted((ANTHROPIC / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_requests_name_the_bad_field(path: Path) -> None:
    case = _load(path)
    with pytest.raises(InvalidRequest) as caught:
        am.validate_request(case["body"])
    assert caught.value.message.startswith(case["path"] + ": "), caught.value.message
    rendered = render(caught.value, WireFormat.ANTHROPIC_MESSAGES)
    assert rendered == {"type": "error", "error": {"type": "invalid_request_error", "message": caught.value.message}}


def test_count_tokens_requests_need_no_max_tokens() -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
    assert am.validate_request(body, require_max_tokens=False) is body


# --- the translated bytes, read by the unmodified SDKs over httpx.MockTransport ---------------


def _sdk_transport(body: bytes, lib: Any = httpx) -> Any:
    def handler(request: Any) -> Any:
        return lib.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return lib.MockTransport(handler)


def _anthropic_bytes(case: str) -> bytes:
    events = _openai_stream_to_anthropic((OPENAI / f"{case}.stream.sse").read_bytes())
    return b"".join(encode_json(data, event=name) for name, data in events)


def _openai_bytes(case: str) -> bytes:
    chunks = _anthropic_stream_to_openai((ANTHROPIC / f"{case}.stream.sse").read_bytes())
    return b"".join(encode_json(c) for c in chunks) + DONE


def test_anthropic_sdk_reads_a_translated_tool_call_stream() -> None:
    with httpx2.Client(transport=_sdk_transport(_anthropic_bytes("tool_calls_split"), httpx2)) as http, anthropic.Anthropic(api_key="k", base_url="http://gw.test", http_client=http) as client:
        with client.messages.stream(model=CLIENT_MODEL, max_tokens=64, messages=[{"role": "user", "content": "weather?"}]) as stream:
            texts = list(stream.text_stream)
            final = stream.get_final_message()
    assert "".join(texts) == "Let me check both cities."
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("text", None), ("tool_use", {"location": "Boston, MA", "unit": "celsius"}), ("tool_use", {"location": "Paris, France"})]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 57 and final.model == CLIENT_MODEL


def test_anthropic_sdk_reads_translated_reasoning_as_thinking() -> None:
    with httpx2.Client(transport=_sdk_transport(_anthropic_bytes("reasoning"), httpx2)) as http, anthropic.Anthropic(api_key="k", base_url="http://gw.test", http_client=http) as client:
        with client.messages.stream(model=CLIENT_MODEL, max_tokens=64, messages=[{"role": "user", "content": "?"}]) as stream:
            final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Okay, compare 9.11 and 9.8: tenths 1 < 8." and final.content[1].text == "9.8 is greater."


def test_anthropic_sdk_raises_on_a_mid_stream_error_event() -> None:
    error = UpstreamStatus(529, "upstream overloaded")
    body = _anthropic_bytes("text_usage")[:400].rsplit(b"\n\n", 1)[0] + b"\n\n" + am.error_event(render(error, WireFormat.ANTHROPIC_MESSAGES))
    with httpx2.Client(transport=_sdk_transport(body, httpx2)) as http, anthropic.Anthropic(api_key="k", base_url="http://gw.test", http_client=http, max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError, match="upstream overloaded"):
            with client.messages.stream(model=CLIENT_MODEL, max_tokens=64, messages=[{"role": "user", "content": "?"}]) as stream:
                list(stream.text_stream)


def test_openai_sdk_reads_a_translated_tool_call_stream() -> None:
    with httpx.Client(transport=_sdk_transport(_openai_bytes("tool_use_split"))) as http, openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=http) as client:
        chunks = list(client.chat.completions.create(model=CLIENT_MODEL, messages=[{"role": "user", "content": "weather?"}], stream=True, stream_options={"include_usage": True}))
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    message = state.current_completion_snapshot.choices[0].message
    assert message.content == "Okay, let's check the weather in both cities:"
    assert [(c.id, json.loads(c.function.arguments)) for c in message.tool_calls or []] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", {"location": "San Francisco, CA", "unit": "fahrenheit"}),
        ("toolu_01QvMh4y1ZxW2kU7n3Jd8pTt", {"location": "New York, NY"}),
        ("toolu_01Lk2Fv3Zy8aRkqJuWy5dX1e", {}),
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 89


def test_openai_sdk_raises_on_a_mid_stream_error_event() -> None:
    error = UpstreamStatus(529, "upstream overloaded")
    first = _openai_bytes("text_cache_usage").split(b"\n\n")[0] + b"\n\n"
    body = first + oc.error_event(render(error, WireFormat.OPENAI_CHAT))
    with httpx.Client(transport=_sdk_transport(body)) as http, openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=http, max_retries=0) as client:
        with pytest.raises(openai.APIError, match="upstream overloaded"):
            list(client.chat.completions.create(model=CLIENT_MODEL, messages=[{"role": "user", "content": "?"}], stream=True))


def test_a_tool_round_trip_through_the_gateway_keeps_the_upstream_call_ids() -> None:
    """Turn 1: an OpenAI upstream streams two tool calls to an Anthropic client. Turn 2: the client
    sends its tool results back; the OpenAI upstream must see its own call ids and arguments."""
    raw = (OPENAI / "tool_calls_split.stream.sse").read_bytes()
    snapshot = None
    buffers: dict[int, bytes] = {}
    for _, data in _openai_stream_to_anthropic(raw):
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    assistant = {"role": "assistant", "content": [b.to_dict() for b in snapshot.content]}
    results = [{"type": "tool_result", "tool_use_id": b["id"], "content": f"sunny in {b['input']['location']}"} for b in assistant["content"] if b["type"] == "tool_use"]
    turn2 = am.validate_request({"model": CLIENT_MODEL, "max_tokens": 100, "messages": [
        {"role": "user", "content": "weather?"}, assistant, {"role": "user", "content": results}]})
    upstream = oc.validate_request(am.request_to_openai(turn2))
    upstream_calls = _accumulate_openai(raw)["choices"][0]["message"]["tool_calls"]
    sent = upstream["messages"][1]
    assert sent["content"] == "Let me check both cities."
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in sent["tool_calls"]] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in upstream_calls]
    assert [(m["role"], m["tool_call_id"]) for m in upstream["messages"][2:]] == [("tool", c["id"]) for c in upstream_calls]


def test_a_thinking_signature_streamed_to_an_openai_client_comes_back_verbatim() -> None:
    """Turn 1: an Anthropic upstream streams signed thinking and a tool call to an OpenAI client.
    Turn 2: the client sends the assistant message back with a tool result; the Anthropic
    upstream receives the thinking block with the exact signature, then the tool_use."""
    raw = (ANTHROPIC / "thinking_tool_use.stream.sse").read_bytes()
    message = _accumulate_openai(_openai_wire(_anthropic_stream_to_openai(raw)))["choices"][0]["message"]
    signature = "".join(c["choices"][0]["delta"].get("reasoning_signature", "") for c in _anthropic_stream_to_openai(raw) if c["choices"])
    message["reasoning_signature"] = signature  # a client keeps the vendor fields of the deltas
    call_id = message["tool_calls"][0]["id"]
    turn2 = oc.validate_request({"model": CLIENT_MODEL, "messages": [
        {"role": "user", "content": "run echo archc-ok"}, message, {"role": "tool", "tool_call_id": call_id, "content": "archc-ok"}]})
    upstream = am.validate_request(am.request_from_openai(turn2))
    thinking, tool_use = upstream["messages"][1]["content"]
    assert thinking == {"type": "thinking", "thinking": "The user wants the marker printed. I'll run it with Bash.",
                        "signature": "EpsCCkYIBxgCKkBq7fz0Xq1Jn0uP2c8Qm5mCq2rVwL9yZx3aT4bU5cV6dW7eX8fY9gZ0hA1iB2jC3kD4lE5mF6nG7oH8pI9qJ0rK"}
    assert tool_use == {"type": "tool_use", "id": "toolu_01QvMh4y1ZxW2kU7n3Jd8pTt", "name": "Bash", "input": {"command": "echo archc-ok", "description": "Print a marker"}}
    assert upstream["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": call_id, "content": "archc-ok"}]


def _openai_wire(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_json(c) for c in chunks) + DONE


def test_cache_breakpoints_go_on_the_stable_prefix_and_the_conversation_only_where_they_pay() -> None:
    """prompt_caching.inject_cache_control: the system text (else the last tool) and the last message's
    last block are marked when what they close is at least min_prefix_tokens; a request that marks
    anything itself is left alone; the client's body is never written to."""
    long_system = "You are a careful coding agent. " * 200  # about 1,600 tokens (4 characters each)
    tools = [{"name": "read", "input_schema": {"type": "object"}}]
    body = {"model": "m", "max_tokens": 5, "system": long_system, "tools": tools,
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}
    frozen = json.dumps(body, sort_keys=True)
    out, where = am.with_cache_breakpoints(body, 1024)
    assert where == ["system", "messages"]
    assert out["system"] == [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
    assert out["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in out["messages"][-1]["content"][0] and out["tools"] is tools
    am.validate_request(out)
    assert json.dumps(body, sort_keys=True) == frozen  # copied where marked, never written through
    assert am.with_cache_breakpoints(body, 100_000) == (body, [])  # too short to be worth a cache write
    assert am.with_cache_breakpoints(out, 1024) == (out, [])  # already marked: the client's (or ours) stand
    no_system = {**body, "system": None, "tools": [{"name": "t", "description": "d" * 5000, "input_schema": {}}]}
    marked, where = am.with_cache_breakpoints(no_system, 1024)
    assert where == ["tools", "messages"] and marked["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    thinking_last = {**body, "messages": [{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]}]}
    assert am.with_cache_breakpoints(thinking_last, 1024)[1] == ["system"]  # a thinking block takes no breakpoint
