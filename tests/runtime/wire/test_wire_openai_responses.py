"""OpenAI Responses <-> chat translation (runtime/wire/openai_responses.py).

Streams are checked by the unmodified openai SDK: the chat stream fixtures in tests/fixtures/wire/
are translated to Responses events, served over httpx.MockTransport, and read with
``client.responses.stream(...)``, whose accumulator must agree with the non-streamed translation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from runtime.errors import InvalidRequest, TranslationError, UpstreamStatus, render
from runtime.wire import WireFormat
from runtime.wire import openai_responses as orr
from runtime.wire.sse import SSEDecoder, encode_json

OPENAI = Path(__file__).resolve().parents[2] / "fixtures" / "wire" / "openai_chat"


def _chunks(name: str) -> list[dict[str, Any]]:
    events = SSEDecoder().feed((OPENAI / f"{name}.stream.sse").read_bytes())
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]


def _events(chunks: list[dict[str, Any]], request: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    stream = orr.StreamFromChat(request or {"model": "m", "input": "hi"}, model="m")
    out = []
    for chunk in chunks:
        out += stream.feed(chunk)
    return decoded(out + stream.finish())


def decoded(written: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """A translated stream's bytes as ``(event, data)`` pairs, each event's data checked to be what
    the general writer (orjson, compact) writes for it: the templated events included."""
    out = []
    for event in SSEDecoder().feed(b"".join(written)):
        data = json.loads(event.data)
        try:
            assert event.data.encode() == orjson.dumps(data), event.data
        except orjson.JSONEncodeError:
            pass  # a lone surrogate: escaped by the standard library instead, valid either way
        assert event.event == data["type"]
        out.append((event.event, data))
    return out


def _sdk(body: bytes) -> openai.OpenAI:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    return openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=httpx.Client(transport=transport), max_retries=0)


def _wire(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(encode_json(data, event=name) for name, data in events)


# --- validation ------------------------------------------------------------------------------------


def test_valid_requests_pass_unchanged() -> None:
    body = {"model": "m", "instructions": "be brief", "input": [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"},
                                                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]}],
        "tools": [{"type": "function", "name": "ls", "parameters": {"type": "object"}}], "tool_choice": "auto",
        "max_output_tokens": 100, "temperature": 0.5, "reasoning": {"effort": "low"}, "stream": True, "store": False,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}, "future_field": 1}
    assert orr.validate_request(body) is body


@pytest.mark.parametrize("body, path", [
    ([], "request body"),
    ({"model": "m"}, "input"),
    ({"input": 7}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user"}]}, "input[0].content"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": 7}]}, "input[0].type"),
    ({"input": ["hi"]}, "input[0]"),
    ({"input": "hi", "tools": [{"name": "x"}]}, "tools[0].type"),
    ({"input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "hi", "temperature": 3}, "temperature"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
])
def test_invalid_requests_name_the_bad_field_in_openai_error_shape(body: Any, path: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        orr.validate_request(body)
    assert caught.value.message.startswith(path + ":"), caught.value.message
    rendered = render(caught.value, WireFormat.OPENAI_RESPONSES)
    assert rendered["error"]["type"] == "invalid_request_error" and rendered["error"]["message"] == caught.value.message


def test_built_in_tools_and_namespaces_are_left_out_and_named() -> None:
    body = orr.validate_request({"input": "hi", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "web_search", "external_web_access": False},
        {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]}]})
    assert orr.dropped_tools(body) == ["web_search", "multi_agent_v1"]
    chat = orr.request_to_chat({**body, "tool_choice": "auto"})
    assert [t["function"]["name"] for t in chat["tools"]] == ["exec_command"] and chat["tool_choice"] == "auto"
    only_hosted = orr.request_to_chat({"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "auto"})
    assert "tools" not in only_hosted and "tool_choice" not in only_hosted  # chat refuses a tool_choice without tools


def test_a_tool_choice_forcing_a_built_in_tool_is_refused_by_name() -> None:
    body = orr.validate_request({"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}})
    with pytest.raises(TranslationError, match="'web_search'") as caught:
        orr.request_to_chat(body)
    assert caught.value.status == 400


# --- requests --------------------------------------------------------------------------------------


def test_request_to_chat_maps_every_field() -> None:
    body = {"model": "m", "instructions": "be brief", "input": [
        {"role": "developer", "content": "use tools"},
        {"role": "user", "content": [{"type": "input_text", "text": "list"}, {"type": "input_image", "image_url": "https://x/i.png", "detail": "low"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "I should run ls"}]},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "pwd", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "/tmp"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
        {"role": "user", "content": "thanks"}],
        "tools": [{"type": "function", "name": "ls", "description": "list", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "ls"}, "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9,
        "parallel_tool_calls": False, "reasoning": {"effort": "high"}, "stream": True,
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}}}
    chat = orr.request_to_chat(orr.validate_request(body))
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "use tools"},
        {"role": "user", "content": [{"type": "text", "text": "list"}, {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": "low"}}]},
        {"role": "assistant", "content": None, "reasoning_content": "I should run ls", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "pwd", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "c2", "content": "/tmp"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "thanks"},
    ]
    assert chat["tools"] == [{"type": "function", "function": {"name": "ls", "description": "list", "parameters": {"type": "object"}, "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "ls"}}
    assert (chat["max_tokens"], chat["temperature"], chat["top_p"], chat["parallel_tool_calls"]) == (50, 0.2, 0.9, False)
    assert chat["reasoning_effort"] == "high" and chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}}


def test_a_string_input_and_stored_history_come_in_order() -> None:
    history = [{"type": "message", "role": "user", "content": "first"}, {"type": "message", "role": "assistant", "content": "one"}]
    chat = orr.request_to_chat({"model": "m", "input": [*history, *orr.input_items({"input": "second"})]})
    assert chat["messages"] == [{"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
                                {"role": "user", "content": "second"}]


def test_an_assistant_text_then_its_calls_are_one_message() -> None:
    chat = orr.request_to_chat({"input": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "running"},
                                          {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]})
    assert chat["messages"][1] == {"role": "assistant", "content": "running",
                                   "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


# --- responses -------------------------------------------------------------------------------------


def test_response_from_chat_text_calls_reasoning_usage() -> None:
    resp = json.loads((OPENAI / "tool_calls_parallel.response.json").read_text())
    out = orr.response_from_chat(resp, {"model": "alias", "input": "hi", "store": False}, model="alias", rid="resp_1")
    assert out["id"] == "resp_1" and out["object"] == "response" and out["status"] == "completed" and out["store"] is False
    calls = [i for i in out["output"] if i["type"] == "function_call"]
    chat_calls = resp["choices"][0]["message"]["tool_calls"]
    assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in chat_calls]
    assert out["usage"]["input_tokens"] == resp["usage"]["prompt_tokens"]
    assert out["usage"]["total_tokens"] == resp["usage"]["prompt_tokens"] + resp["usage"]["completion_tokens"]
    reasoning = orr.response_from_chat(json.loads((OPENAI / "reasoning.response.json").read_text()), {"input": "?"}, model="m")
    assert [i["type"] for i in reasoning["output"]] == ["reasoning", "message"]
    cut = orr.response_from_chat(json.loads((OPENAI / "length.response.json").read_text()), {"input": "?"}, model="m")
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}


def test_the_sdk_parses_a_translated_response() -> None:
    resp = json.loads((OPENAI / "text_cached.response.json").read_text())
    out = orr.response_from_chat(resp, {"model": "m", "input": "hi"}, model="m")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=out))
    with openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=httpx.Client(transport=transport)) as client:
        parsed = client.responses.create(model="m", input="hi")
    assert parsed.output_text == resp["choices"][0]["message"]["content"]
    assert parsed.usage is not None and parsed.usage.input_tokens_details.cached_tokens == resp["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_output_items_feed_the_next_turn() -> None:
    resp = json.loads((OPENAI / "tool_calls_parallel.response.json").read_text())
    out = orr.response_from_chat(resp, {"input": "hi"}, model="m")
    items = orr.output_items(out)
    chat = orr.request_to_chat({"input": [*items, {"type": "function_call_output", "call_id": items[-1]["call_id"], "output": "ok"}]})
    assert chat["messages"][-2]["role"] == "assistant" and len(chat["messages"][-2]["tool_calls"]) == len(resp["choices"][0]["message"]["tool_calls"])
    assert chat["messages"][-1] == {"role": "tool", "tool_call_id": items[-1]["call_id"], "content": "ok"}


# --- streams, read by the openai SDK ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["text_usage", "tool_calls_split", "tool_calls_interleaved", "tool_calls_one_chunk",
                                  "reasoning", "length"])
def test_the_sdk_accumulates_a_translated_stream(name: str) -> None:
    chunks = _chunks(name)
    events = _events(chunks)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[0][0] == "response.created" and events[1][0] == "response.in_progress"
    expected = orr.response_from_chat(_whole(chunks), {"input": "hi"}, model="m")
    with _sdk(_wire(events)) as client, client.responses.stream(model="m", input="hi") as stream:
        seen = [event for event in stream]
        final = stream.get_final_response() if expected["status"] == "completed" else seen[-1].response
    assert [e.type for e in seen] == [name for name, _ in events]
    assert final.status == expected["status"] and events[-1][0] == f"response.{expected['status']}"
    assert final.output_text == "".join(c["text"] for i in expected["output"] if i["type"] == "message" for c in i["content"])
    calls = [(i.call_id, i.name, i.arguments) for i in final.output if i.type == "function_call"]
    assert calls == [(i["call_id"], i["name"], i["arguments"]) for i in expected["output"] if i["type"] == "function_call"]
    assert [i.type for i in final.output] == [i["type"] for i in expected["output"] if i["type"] != "message" or i["content"][0]["text"]]


def _whole(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The completion the chunks add up to (what a non-streamed call would have answered)."""
    text, reasoning, calls, finish, usage = "", "", {}, None, None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                slot["id"] = slot["id"] or call.get("id")
                slot["function"]["name"] += (call.get("function") or {}).get("name") or ""
                slot["function"]["arguments"] += (call.get("function") or {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


def test_a_mid_stream_error_reaches_the_sdk_as_error_then_failed() -> None:
    stream = orr.StreamFromChat({"input": "hi"}, model="m")
    written = stream.feed(_chunks("text_usage")[0]) + stream.feed(_chunks("text_usage")[1])
    events = decoded(written + stream.error(render(UpstreamStatus(529, "upstream overloaded"), WireFormat.OPENAI_RESPONSES)))
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    with _sdk(_wire(events)) as client, client.responses.stream(model="m", input="hi") as s:
        seen = list(s)
        with pytest.raises(RuntimeError, match="response.completed"):
            s.get_final_response()
    assert [e.type for e in seen[-2:]] == ["error", "response.failed"]
    assert seen[-2].message == "upstream overloaded" and seen[-1].response.error.message == "upstream overloaded"
    assert seen[-1].response.status == "failed"


def test_items_chat_cannot_express_are_skipped_or_refused_by_name() -> None:
    """Any item type validates (a Responses upstream takes it as sent). Translated to chat, a server-side
    built-in call's record is left out (its result is in the message after it); an item the client must
    answer, or one naming a stored item, is a 400 naming its type. The router reads past both."""
    searched = {"input": [{"role": "user", "content": "news?"},
                          {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"query": "news"}},
                          {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Quiet day."}]},
                          {"role": "user", "content": "thanks"}]}
    assert orr.validate_request(searched) is searched
    assert orr.request_to_chat(searched)["messages"] == [
        {"role": "user", "content": "news?"}, {"role": "assistant", "content": "Quiet day."}, {"role": "user", "content": "thanks"}]
    for item in ({"type": "item_reference", "id": "msg_1"}, {"type": "computer_call", "call_id": "c", "action": {}},
                 {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "*** Begin Patch"}):
        body = orr.validate_request({"input": [{"role": "user", "content": "go"}, item]})
        with pytest.raises(TranslationError) as caught:
            orr.request_to_chat(body)
        assert caught.value.status == 400 and repr(item["type"]) in caught.value.message
        assert orr.chat_messages(body) == [{"role": "user", "content": "go"}]


def test_output_items_keep_what_a_responses_upstream_takes_back() -> None:
    """What a stored response keeps for the next turn: messages as assistant text, every other item as given;
    what is not an item at all (a lying upstream) is skipped, never a crash."""
    response = {"output": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2"}, "junk", {"no": "type"}]}
    assert orr.output_items(response) == [
        response["output"][0], response["output"][1], {"type": "message", "role": "assistant", "content": "Hi."},
        response["output"][3]]
    assert orr.output_items({"output": "nope"}) == []
