"""Property tests (hypothesis) for the Responses wire module (runtime/wire/openai_responses.py).

- A Responses request keeps its conversation through the pivot: every message's text in order,
  every function call and output paired by ``call_id``, ``instructions`` first; the translation is
  a valid chat request, and a valid Anthropic one through the pivot.
- ``validate_request`` raises nothing but InvalidRequest on arbitrary JSON-ish input, and a request
  it accepts translates (or raises InvalidRequest/TranslationError, by name) into a valid chat request.
- A chat answer round-trips: chat -> Responses -> the next turn's input items -> chat gives back
  the assistant message (text, reasoning, tool calls).
- Any chat chunk stream becomes numbered Responses events that the openai SDK accumulates into the
  non-streamed translation; upstream garbage ends in a GatewayError, never a crash.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import GatewayError, InvalidRequest, TranslationError
from runtime.wire import WireFormat, adapt
from runtime.wire import anthropic_messages as am
from runtime.wire import openai_chat as oc
from runtime.wire import openai_responses as orr
from runtime.wire.sse import encode_json
from tests.runtime.wire.test_wire_openai_responses import decoded
from tests.runtime.wire.test_wire_properties import (_accumulate, _optional, fuzz, ids, mutated, names, openai_chunk_streams,
                                                     schemas, text, tool_inputs, unit)

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- Responses requests ----------------------------------------------------------------------------

user_content = text | st.lists(st.builds(lambda t: {"type": "input_text", "text": t}, text), min_size=1, max_size=3)
arguments = tool_inputs.map(oc.compact_json)


@st.composite
def turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A user message, then maybe: reasoning, assistant text and/or function calls with their outputs
    (reasoning only before text or calls: as an answer's items come)."""
    items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": draw(user_content)}]
    said = draw(st.none() | text)
    calls = draw(st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0]))
    if (said is not None or calls) and draw(st.booleans()):  # reasoning comes before what the model said or called
        items.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": t} for t in draw(st.lists(text, min_size=1, max_size=2))]})
    if said is not None:
        items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": said}]})
    items += [{"type": "function_call", "call_id": c, "name": n, "arguments": a} for c, n, a in calls]
    items += [{"type": "function_call_output", "call_id": c, "output": draw(text)} for c, _, _ in calls]
    return items


@st.composite
def responses_requests(draw: st.DrawFn) -> dict[str, Any]:
    items = [item for _ in range(draw(st.integers(1, 3))) for item in draw(turns())]
    body: dict[str, Any] = {"model": draw(names), "input": draw(st.just(items) | text) if len(items) == 1 else items}
    _optional(draw, body, "instructions", text)
    _optional(draw, body, "max_output_tokens", st.integers(1, 100_000))
    _optional(draw, body, "temperature", unit)
    _optional(draw, body, "top_p", unit)
    _optional(draw, body, "stream", st.booleans())
    _optional(draw, body, "store", st.booleans())
    _optional(draw, body, "reasoning", st.builds(lambda e: {"effort": e}, st.sampled_from(["low", "medium", "high"])))
    if draw(st.booleans()):
        body["tools"] = draw(st.lists(st.builds(lambda n, d, s: {"type": "function", "name": n, "description": d, "parameters": s},
                                                names, text, schemas), min_size=1, max_size=3, unique_by=lambda t: t["name"]))
        choice = draw(st.sampled_from(["auto", "none", "required", "named", None]))
        if choice == "named":
            body["tool_choice"] = {"type": "function", "name": body["tools"][0]["name"]}
        elif choice is not None:
            body["tool_choice"] = choice
    return body


def _texts(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


@SETTINGS
@given(responses_requests())
def test_a_request_keeps_its_conversation_through_the_pivot(body: dict[str, Any]) -> None:
    orr.validate_request(body)
    chat = orr.request_to_chat(body)
    oc.validate_request(chat)
    items = orr.input_items(body)
    messages = chat["messages"]
    if "instructions" in body:
        assert messages[0] == {"role": "system", "content": body["instructions"]}
        messages = messages[1:]
    # Every message's text, in order, with its role.
    said = [(i["role"], _texts(i["content"])) for i in items if i.get("type", "message") == "message"]
    assert [(m["role"], _texts(m["content"])) for m in messages if m["role"] != "tool" and m.get("content") is not None] == said
    # Calls and outputs paired by call_id, in order; each output follows its call.
    calls = [(i["call_id"], i["name"], i["arguments"]) for i in items if i["type"] == "function_call"] if isinstance(body["input"], list) else []
    got_calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for m in messages for c in m.get("tool_calls") or []]
    assert got_calls == calls
    outputs = [(i["call_id"], i["output"]) for i in items if i.get("type") == "function_call_output"]
    assert [(m["tool_call_id"], m["content"]) for m in messages if m["role"] == "tool"] == outputs
    # Reasoning joins the assistant turn after it.
    thought = ["\n".join(p["text"] for p in i["summary"]) for i in items if i.get("type") == "reasoning"]
    assert [m["reasoning_content"] for m in messages if "reasoning_content" in m] == [t for t in thought if t]
    assert chat.get("max_tokens") == body.get("max_output_tokens") and chat.get("stream") == (True if body.get("stream") else None)
    # Through the pivot to Anthropic: a valid Anthropic request.
    am.validate_request(adapt.request_for_upstream(body, WireFormat.OPENAI_RESPONSES, WireFormat.ANTHROPIC_MESSAGES, "claude"))


@FUZZ
@given(fuzz | mutated(responses_requests()))
def test_validate_raises_only_invalid_request_and_accepted_requests_translate(body: Any) -> None:
    try:
        orr.validate_request(body)
    except InvalidRequest:
        return
    try:
        chat = orr.request_to_chat(body)
    except (InvalidRequest, TranslationError) as exc:
        assert exc.status == 400 and exc.message
        return
    oc.validate_request(chat)
    try:
        am.validate_request(am.request_from_openai({**chat, "model": "claude"}))
    except TranslationError:
        pass


# --- chat answers -> Responses -> the next turn -----------------------------------------------------


@st.composite
def chat_completions(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | text)}
    if draw(st.booleans()):
        message["reasoning_content"] = draw(text)
    calls = draw(st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0]))
    if calls:
        message["tool_calls"] = [{"id": c, "type": "function", "function": {"name": n, "arguments": a}} for c, n, a in calls]
    if message["content"] is None and not calls:
        message["content"] = draw(text)
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    usage = {"prompt_tokens": draw(st.integers(0, 10_000)), "completion_tokens": draw(st.integers(0, 10_000))}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {"id": "chatcmpl-p", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


@SETTINGS
@given(chat_completions(), responses_requests())
def test_a_chat_answer_round_trips_through_the_next_turn(resp: dict[str, Any], request: dict[str, Any]) -> None:
    out = orr.response_from_chat(resp, request, model="client-model")
    openai.types.responses.Response.model_validate(out)  # the SDK's own type accepts it
    assert out["status"] == ("incomplete" if resp["choices"][0]["finish_reason"] == "length" else "completed")
    assert out["usage"]["input_tokens"] == resp["usage"]["prompt_tokens"] and out["model"] == "client-model"
    back = orr.request_to_chat({"input": [{"role": "user", "content": "q"}, *orr.output_items(out)]})["messages"][1:]
    message = resp["choices"][0]["message"]
    assert len(back) == 1
    assert (back[0].get("content") or None) == (message["content"] or None)
    assert back[0].get("reasoning_content") == message.get("reasoning_content")
    assert back[0].get("tool_calls") == message.get("tool_calls")


# --- chat streams -> Responses events ----------------------------------------------------------------


def _sdk_final(events: list[tuple[str, dict[str, Any]]]) -> Any:
    body = b"".join(encode_json(data, event=name) for name, data in events)
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    with openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=httpx.Client(transport=transport), max_retries=0) as client:
        with client.responses.stream(model="m", input="hi") as stream:
            # The terminal event's response as the SDK parsed it (get_final_response takes only response.completed).
            return [e.response for e in stream if e.type in ("response.completed", "response.incomplete")][-1]


def _shape(response: Any) -> list[tuple[Any, ...]]:
    """What an answer says, without its generated ids."""
    out = []
    for item in response["output"]:
        if item["type"] == "message":
            out.append(("message", "".join(p["text"] for p in item["content"])))
        elif item["type"] == "function_call":
            out.append(("call", item["call_id"], item["name"], item["arguments"]))
        else:
            out.append((item["type"], [p["text"] for p in item.get("summary") or []]))
    return out


@SETTINGS
@given(openai_chunk_streams())
def test_any_chat_stream_accumulates_to_the_non_streamed_translation(chunks: list[dict[str, Any]]) -> None:
    whole = _accumulate(chunks)
    stream = orr.StreamFromChat({"model": "m", "input": "hi"}, model="m")
    written: list[bytes] = []
    for chunk in chunks:
        written += stream.feed(chunk)
    events = decoded(written + stream.finish())
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[0][0] == "response.created" and events[-1][0] in ("response.completed", "response.incomplete")
    expected = orr.response_from_chat(whole, {"model": "m", "input": "hi"}, model="m")
    final = _sdk_final(events).to_dict()
    assert _shape(final) == _shape(expected) == _shape(stream.response)
    assert final["status"] == expected["status"]


garbage_chunks = st.lists(fuzz | st.builds(lambda c: {"choices": c}, fuzz), max_size=6)


@FUZZ
@given(garbage_chunks, fuzz)
def test_upstream_garbage_is_a_gateway_error_never_a_crash(chunks: list[Any], resp: Any) -> None:
    converter = adapt.stream_adapter(WireFormat.OPENAI_RESPONSES, WireFormat.OPENAI_CHAT, model="m", body={"input": "hi"})
    try:
        for chunk in chunks:
            converter.feed(encode_json(chunk) if not isinstance(chunk, str) else f"data: {chunk}\n\n".encode())
        json.dumps([converter.finish()], default=bytes.decode)
    except GatewayError:
        pass
    try:
        json.dumps(adapt.response_for_client(resp, WireFormat.OPENAI_RESPONSES, WireFormat.OPENAI_CHAT, model="m", body={"input": "hi"}))
    except GatewayError:
        pass


def test_text_deltas_written_directly_are_the_bytes_the_general_path_writes() -> None:
    """``_ToResponses`` reads a text-only chunk by ``text_delta`` (a shorter reading than ``feed``'s):
    for any chat stream, the bytes are those of the general path (``StreamFromChat.feed``), event for
    event, ids aside (each stream draws its own)."""
    import re
    from unittest import mock

    written: list[int] = []  # delta events written directly, over all the generated streams
    text_delta = orr.StreamFromChat.text_delta

    def counted(self: Any, chunk: dict[str, Any]) -> bytes | None:
        data = text_delta(self, chunk)
        written.append(data is not None)
        return data

    def ids_out(stream: bytes) -> bytes:
        return re.sub(rb'"(resp|msg|rs|fc|call)_[0-9a-f]+"', rb'"\1_x"', re.sub(rb'"created_at":\d+', b'"created_at":0', stream))

    @SETTINGS
    @given(openai_chunk_streams())
    def check(chunks: list[dict[str, Any]]) -> None:
        raw = b"".join(encode_json(chunk) for chunk in chunks) + b"data: [DONE]\n\n"
        out = []
        for direct in (True, False):
            converter = adapt.stream_adapter(WireFormat.OPENAI_RESPONSES, WireFormat.OPENAI_CHAT, model="m", body={"input": "hi"})
            with mock.patch.object(orr.StreamFromChat, "text_delta", counted if direct else (lambda self, chunk: None)):
                out.append(b"".join(converter.feed(raw)) + b"".join(converter.finish()))
        assert ids_out(out[0]) == ids_out(out[1])

    check()
    assert sum(written) > 50  # the direct writing was exercised, not only its refusals
