"""Property tests (hypothesis) for the wire layer.

- Request round trips through the pivot keep every field the pivot can carry
  (Anthropic -> OpenAI -> Anthropic and OpenAI -> Anthropic -> OpenAI).
- ``validate_request`` raises nothing but InvalidRequest on arbitrary JSON-ish input, and a
  request it accepts always translates (or raises TranslationError) into a valid target request.
- SSEDecoder yields the same events however the byte stream is split.
- StreamFromOpenAI turns any text/reasoning/interleaved-tool-call chunk sequence into a valid
  Anthropic lifecycle whose accumulated message equals the non-streamed translation.
"""

from __future__ import annotations

import json
from typing import Any
import pytest

from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import GatewayError, InvalidRequest, TranslationError
from runtime.wire.sse import SSEDecoder, SSEEvent, encode_event
from runtime.wire import anthropic_messages as am
from runtime.wire import openai_chat as oc

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- building blocks --------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(lambda s: not s.startswith("Error: "))
ids = st.text(st.sampled_from("abcXYZ019_-"), min_size=1, max_size=12)
names = st.text(st.sampled_from("abcdefgh_"), min_size=1, max_size=10)
b64 = st.text(st.sampled_from("ABCDEFabcdef0123456789+/"), min_size=4, max_size=24).map(lambda s: s + "==")
scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False, width=32) | st.text(max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
tool_inputs = st.dictionaries(names, json_values, max_size=3)
schemas = st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(names, st.fixed_dictionaries({"type": st.sampled_from(["string", "integer"])}), max_size=2)})
unit = st.floats(0, 1, allow_nan=False)
# Opaque ids both sides accept (long ids, emails and phone-like ids are hashed on the way).
user_ids = ids.map(lambda s: "user-" + s)


def _optional(draw: st.DrawFn, out: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        out[key] = draw(strategy)


# --- Anthropic requests the pivot can carry ---------------------------------------------

anthropic_image = st.one_of(
    st.builds(lambda m, d: {"type": "image", "source": {"type": "base64", "media_type": m, "data": d}}, st.sampled_from(["image/png", "image/jpeg"]), b64),
    st.builds(lambda u: {"type": "image", "source": {"type": "url", "url": "https://example.org/" + u}}, names),
)
anthropic_text = st.builds(lambda t: {"type": "text", "text": t}, text)


@st.composite
def anthropic_tool_result(draw: st.DrawFn) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": draw(ids)}
    if draw(st.booleans()):
        block["is_error"] = True
    block["content"] = draw(st.text(max_size=10).filter(lambda s: not s.startswith("Error: ")))
    return block


@st.composite
def anthropic_user(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"role": "user", "content": draw(text)}
    results = draw(st.lists(anthropic_tool_result(), max_size=2))
    rest = draw(st.lists(anthropic_text | anthropic_image, min_size=0 if results else 1, max_size=3))
    return {"role": "user", "content": results + rest}


@st.composite
def anthropic_assistant(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"role": "assistant", "content": draw(text)}
    thinking = draw(st.lists(
        st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, text, b64)
        | st.builds(lambda d: {"type": "redacted_thinking", "data": d}, b64),
        max_size=2,
    ))
    texts = draw(st.lists(anthropic_text, max_size=1))
    calls = draw(st.lists(st.builds(lambda i, n, x: {"type": "tool_use", "id": i, "name": n, "input": x}, ids, names, tool_inputs), max_size=3))
    blocks = thinking + texts + calls
    if len(blocks) < 2 and not (thinking or calls):
        blocks = [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]
    return {"role": "assistant", "content": blocks}


@st.composite
def anthropic_requests(draw: st.DrawFn) -> dict[str, Any]:
    turns = draw(st.integers(1, 5))
    messages = [draw(anthropic_user()) if i % 2 == 0 else draw(anthropic_assistant()) for i in range(turns)]
    body: dict[str, Any] = {"model": draw(names), "max_tokens": draw(st.integers(1, 100_000)), "messages": messages}
    _optional(draw, body, "system", text | st.lists(anthropic_text, min_size=1, max_size=2))
    _optional(draw, body, "temperature", unit)
    _optional(draw, body, "top_p", unit)
    _optional(draw, body, "stop_sequences", st.lists(text.filter(str.strip), min_size=1, max_size=3))
    _optional(draw, body, "metadata", st.builds(lambda u: {"user_id": u}, user_ids))
    _optional(draw, body, "stream", st.booleans())
    if draw(st.booleans()):
        body["tools"] = draw(st.lists(st.builds(lambda n, d, s: {"name": n, "description": d, "input_schema": s}, names, text, schemas), min_size=1, max_size=3))
        choice = draw(st.sampled_from(["auto", "any", "tool", "none", None]))
        if choice is not None:
            body["tool_choice"] = {"type": choice}
            if choice == "tool":
                body["tool_choice"]["name"] = body["tools"][0]["name"]
            if choice != "none" and draw(st.booleans()):
                body["tool_choice"]["disable_parallel_tool_use"] = draw(st.booleans())
    return body


def _as_anthropic_canon(body: dict[str, Any]) -> dict[str, Any]:
    """What the pivot carries: a system list becomes its text joined by blank lines."""
    out = dict(body)
    if isinstance(out.get("system"), list):
        out["system"] = "\n\n".join(b["text"] for b in out["system"])
    return out


@SETTINGS
@given(anthropic_requests())
def test_anthropic_round_trip_through_the_pivot(body: dict[str, Any]) -> None:
    am.validate_request(body)
    pivot = oc.validate_request(am.request_to_openai(body))
    back = am.validate_request(am.request_from_openai(pivot))
    assert back == _as_anthropic_canon(body)


# --- OpenAI requests the Anthropic format can carry ------------------------------------


@st.composite
def openai_assistant_and_tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    message: dict[str, Any] = {"role": "assistant"}
    calls = draw(st.lists(st.builds(
        lambda i, n, x: {"id": i, "type": "function", "function": {"name": n, "arguments": oc.compact_json(x)}}, ids, names, tool_inputs), max_size=3, unique_by=lambda c: c["id"]))
    message["content"] = draw(text) if not calls or draw(st.booleans()) else None
    if calls:
        message["tool_calls"] = calls
    if draw(st.booleans()):  # only signed reasoning can be sent to Anthropic
        message["reasoning_content"] = draw(text)
        message["reasoning_signature"] = draw(b64)
    results = [{"role": "tool", "tool_call_id": c["id"], "content": draw(st.text(max_size=10))} for c in calls]
    return [message, *results]


openai_parts = st.lists(
    st.builds(lambda t: {"type": "text", "text": t}, text)
    | st.builds(lambda m, d: {"type": "image_url", "image_url": {"url": f"data:{m};base64,{d}"}}, st.sampled_from(["image/png", "image/webp"]), b64)
    | st.builds(lambda u: {"type": "image_url", "image_url": {"url": "https://example.org/" + u}}, names),
    min_size=1, max_size=3,
)


@st.composite
def openai_requests(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        after_tools = bool(messages) and messages[-1]["role"] == "tool"
        content = draw(openai_parts) if after_tools or draw(st.booleans()) else draw(text)
        messages.append({"role": "user", "content": content})
        if draw(st.booleans()):
            messages.extend(draw(openai_assistant_and_tools()))
    body: dict[str, Any] = {"model": draw(names), "messages": messages, "max_tokens": draw(st.integers(1, 100_000))}
    _optional(draw, body, "temperature", unit)
    _optional(draw, body, "top_p", unit)
    _optional(draw, body, "stop", st.lists(text.filter(str.strip), min_size=1, max_size=3))
    _optional(draw, body, "user", user_ids)
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
    if draw(st.booleans()):
        tools = draw(st.lists(st.builds(lambda n, d, s: {"type": "function", "function": {"name": n, "description": d, "parameters": s}}, names, text, schemas), min_size=1, max_size=3))
        body["tools"] = tools
        choice = draw(st.sampled_from(["auto", "required", "none", "function", None]))
        if choice == "function":
            body["tool_choice"] = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        elif choice is not None:
            body["tool_choice"] = choice
        if choice not in (None, "none") and draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    return body


@SETTINGS
@given(openai_requests())
def test_openai_round_trip_through_anthropic(body: dict[str, Any]) -> None:
    oc.validate_request(body)
    anthropic = am.validate_request(am.request_from_openai(body))
    back = oc.validate_request(am.request_to_openai(anthropic))
    assert back == body


# --- validation never crashes -----------------------------------------------------------

KEYS = ["model", "messages", "role", "content", "type", "text", "max_tokens", "system", "tools", "tool_choice", "tool_calls",
        "tool_call_id", "function", "name", "arguments", "input", "id", "tool_use_id", "source", "image_url", "url", "data",
        "media_type", "is_error", "thinking", "signature", "stream", "stop", "stop_sequences", "metadata", "user_id",
        "input_schema", "parameters", "temperature", "n", "reasoning_content", "parallel_tool_calls", "disable_parallel_tool_use"]
WORDS = ["user", "assistant", "system", "tool", "developer", "text", "image", "image_url", "tool_use", "tool_result",
         "thinking", "redacted_thinking", "document", "base64", "function", "auto", "any", "none", "required", "file"]
fuzz_scalars = st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True) | st.sampled_from(WORDS) | st.text(max_size=5)
fuzz = st.recursive(
    fuzz_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6),
    max_leaves=30,
)


def _slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            out.append((value, key))
            _slots(inner, out)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out.append((value, i))
            _slots(inner, out)
    return out


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid request with a few random edits (a value replaced, a key or item removed), so
    the fuzzing reaches deep into messages and blocks and some results are still valid."""
    body = json.loads(json.dumps(draw(valid)))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(body, [])
        container, key = draw(st.sampled_from(slots))
        if draw(st.booleans()):
            container[key] = draw(fuzz)
        else:
            del container[key]
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz | mutated(openai_requests()) | mutated(anthropic_requests()))
def test_openai_validate_raises_only_invalid_request_and_accepted_requests_translate(body: Any) -> None:
    try:
        oc.validate_request(body)
    except InvalidRequest:
        return
    try:
        converted = am.request_from_openai(body)
    except TranslationError:
        return
    am.validate_request(converted)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz | mutated(anthropic_requests()) | mutated(openai_requests()))
def test_anthropic_validate_raises_only_invalid_request_and_accepted_requests_translate(body: Any) -> None:
    try:
        am.validate_request(body)
    except InvalidRequest:
        return
    try:
        converted = am.request_to_openai(body)
    except TranslationError:
        return
    oc.validate_request(converted)


@SETTINGS
@given(anthropic_requests())
def test_mid_conversation_system_text_is_kept_when_hoisted(body: dict[str, Any]) -> None:
    note = {"role": "system", "content": "mid-conversation note"}
    body = {**body, "messages": [*body["messages"], note]}
    pivot = am.request_to_openai(body)
    assert pivot["messages"][-1] == note
    assert am.request_from_openai(pivot)["system"].endswith("mid-conversation note")


# --- SSE decoding is split-invariant ----------------------------------------------------

sse_events = st.lists(
    st.tuples(st.none() | names, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12), st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=6), max_size=2)),
    min_size=1, max_size=6,
)


@SETTINGS
@given(sse_events, st.sampled_from(["\n", "\r\n", "\r"]), st.data())
def test_sse_decoder_is_split_invariant(events: list[tuple[str | None, str, list[str]]], newline: str, data: st.DataObject) -> None:
    raw = b""
    expected = []
    for name, first, more in events:
        payload = "\n".join([first, *more])
        frame = encode_event(payload, name).decode("utf-8")
        if data.draw(st.booleans()):
            frame = ": comment\n" + frame
        raw += frame.replace("\n", newline).encode("utf-8")
        expected.append(SSEEvent(name, payload))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    decoder = SSEDecoder()
    got: list[SSEEvent] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)]):
        got += decoder.feed(raw[start:end])
    got += decoder.flush()
    assert got == expected


# --- OpenAI chunk streams -> Anthropic lifecycle ----------------------------------------


@st.composite
def openai_chunk_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"reasoning_content": t} for t in draw(st.lists(text, max_size=3))]
    deltas += [{"content": t} for t in draw(st.lists(text, max_size=3))]
    tools = draw(st.lists(st.tuples(ids, names, tool_inputs), max_size=3, unique_by=lambda t: t[0]))
    pieces: list[tuple[int, dict[str, Any]]] = []
    for index, (call_id, name, arguments) in enumerate(tools):
        args = oc.compact_json(arguments)
        cut = draw(st.lists(st.integers(0, len(args)), max_size=3))
        bounds = sorted({0, len(args), *cut})
        parts = [args[a:b] for a, b in zip(bounds, bounds[1:])] or [""]
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": parts[0]}}
        pieces.append((index, first))
        pieces += [(index, {"index": index, "function": {"arguments": p}}) for p in parts[1:]]
    # Interleave the calls' pieces arbitrarily; each call keeps its own order, and calls
    # start in index order (as providers do).
    queues: dict[int, list[dict[str, Any]]] = {}
    for index, piece in pieces:
        queues.setdefault(index, []).append(piece)
    started = 0
    while any(queues.values()):
        candidates = [i for i in range(started) if queues[i]] + ([started] if started < len(queues) else [])
        pick = draw(st.sampled_from(candidates))
        started = max(started, pick + 1)
        deltas.append({"tool_calls": [queues[pick].pop(0)]})
    finish = draw(st.sampled_from(["stop", "tool_calls", "length", None]))
    chunks = [{"id": "chatcmpl-prop", "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    if finish:
        chunks.append({"id": "chatcmpl-prop", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if draw(st.booleans()):
        chunks.append({"id": "chatcmpl-prop", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    return chunks


def _accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if "content" in delta:
                message["content"] = (message["content"] or "") + delta["content"]
            if "reasoning_content" in delta:
                message["reasoning_content"] = message.get("reasoning_content", "") + delta["reasoning_content"]
            for call in delta.get("tool_calls", ()):
                slot = calls.setdefault(call["index"], {"id": call.get("id"), "type": "function", "function": {"name": call["function"].get("name"), "arguments": ""}})
                slot["function"]["arguments"] += call["function"].get("arguments", "")
            finish = choice["finish_reason"] or finish
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    usage = next((c["usage"] for c in chunks if c.get("usage")), None)
    return {"id": "chatcmpl-prop", "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


@SETTINGS
@given(openai_chunk_streams())
def test_stream_from_openai_matches_the_non_streamed_translation(chunks: list[dict[str, Any]]) -> None:
    stream = am.StreamFromOpenAI("m")
    events: list[tuple[str, dict[str, Any]]] = []
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish()
    names_seen = [n for n, _ in events]
    assert names_seen[0] == "message_start" and names_seen[-2:] == ["message_delta", "message_stop"]
    open_block = None
    for name, data in events:
        if name == "content_block_start":
            assert open_block is None
            open_block = data["index"]
        elif name in ("content_block_delta", "content_block_stop"):
            assert data["index"] == open_block
            open_block = None if name == "content_block_stop" else open_block
    snapshot = None
    buffers: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    expected = am.response_from_openai(_accumulate(chunks), model="m")
    got = snapshot.to_dict()
    assert got["content"] == expected["content"]
    if _accumulate(chunks)["choices"][0]["finish_reason"]:
        assert got["stop_reason"] == expected["stop_reason"]
    assert got["usage"]["output_tokens"] == expected["usage"]["output_tokens"]
    json.dumps(events)  # everything emitted is JSON-serialisable


# --- upstream garbage gives UpstreamError, never a crash ------------------------------

ANTHROPIC_EVENT_TYPES = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop", "ping", "error"]
upstream_dicts = st.dictionaries(st.sampled_from([*KEYS, "message", "content_block", "delta", "index", "usage", "choices", "finish_reason", "partial_json", "error"]), fuzz, max_size=5)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ANTHROPIC_EVENT_TYPES), upstream_dicts | fuzz), max_size=6), st.lists(upstream_dicts | fuzz, max_size=6))
def test_streams_map_malformed_upstream_payloads_to_gateway_errors(events: list[tuple[str, Any]], chunks: list[Any]) -> None:
    to_openai = am.StreamToOpenAI("m")
    try:
        for name, data in events:
            if isinstance(data, dict) and "type" not in data:
                data = {**data, "type": name}
            to_openai.feed(name, data)
        to_openai.finish()
    except GatewayError:
        pass
    from_openai = am.StreamFromOpenAI("m")
    try:
        for chunk in chunks:
            from_openai.feed(chunk)
        from_openai.finish()
    except GatewayError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upstream_dicts | fuzz)
def test_responses_map_malformed_upstream_payloads_to_gateway_errors(resp: Any) -> None:
    for convert in (lambda r: am.response_to_openai(r, model="m"), lambda r: am.response_from_openai(r, model="m")):
        try:
            json.dumps(convert(resp))
        except GatewayError:
            pass


# -- the inline checks of plain messages answer as the full checks do ----------------------------

_ODD_MESSAGES = [
    {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}, {"role": "tool", "content": "42"},
    {"role": ["user"], "content": "hi"}, {"role": {"a": 1}, "content": "hi"}, {"role": "user", "content": None},
    {"role": "user", "content": []}, {"role": "assistant", "content": []}, {"role": "user", "content": [{"type": "text", "text": 1}]},
    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}, {"role": "user"}, {"content": "x"},
    {"role": "user", "content": "hi", "name": 3}, {"role": "system", "content": [{"type": "text", "text": "s"}]},
    {"role": "user", "content": [{"type": "text", "text": "a"}, "b"]}, "hello", None, 7,
]


def _verdict(validate: Any, body: Any) -> str:
    from runtime.errors import InvalidRequest
    try:
        validate(body)
        return "ok"
    except InvalidRequest as exc:
        return exc.message


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
def test_plain_message_shortcut_matches_the_full_checks(fmt: str) -> None:
    import itertools

    from runtime.wire import _anthropic_validate, anthropic_messages, openai_chat

    if fmt == "openai":
        fast, full = openai_chat.validate_request, lambda body: openai_chat.each(body["messages"], "messages", openai_chat._check_message)
    else:
        fast = anthropic_messages.validate_request
        full = lambda body: _anthropic_validate.each(body["messages"], "messages", _anthropic_validate._check_message)  # noqa: E731
    for first, second in itertools.product(_ODD_MESSAGES, repeat=2):
        body = {"model": "m", "max_tokens": 8, "messages": [first, second]}
        assert _verdict(fast, body) == _verdict(full, body), (first, second)
