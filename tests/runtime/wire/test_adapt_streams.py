"""runtime/wire/adapt.py's stream converters: a stream is complete only with its terminal event, passed
through or translated, wherever the chunk boundaries fall; and ``check_answer`` on answer shapes."""

from __future__ import annotations

import json

import pytest

from runtime.wire import adapt
from runtime.errors import BadUpstreamResponse
from runtime.wire import WireFormat

OPENAI, ANTHROPIC, RESPONSES = WireFormat.OPENAI_CHAT, WireFormat.ANTHROPIC_MESSAGES, WireFormat.OPENAI_RESPONSES
CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
OPENAI_STREAM = f"data: {json.dumps(CHUNK)}\n\ndata: [DONE]\n\n".encode()
ANTHROPIC_STREAM = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":'
                    b'"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":0}}}\n\n'
                    b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
RESPONSES_STREAM = (b'event: response.created\r\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"r"}}\r\n\r\n'
                    b'event: response.incomplete\r\ndata: {"type":"response.incomplete","sequence_number":1,"response":{"id":"r"}}\r\n\r\n')


def _run(converter, data: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        out += b"".join(converter.feed(data[i:i + size]))
    return out + b"".join(converter.finish())


@pytest.mark.parametrize("size", [1, 3, 7, 10_000])
@pytest.mark.parametrize("fmt, data", [(OPENAI, OPENAI_STREAM), (ANTHROPIC, ANTHROPIC_STREAM), (RESPONSES, RESPONSES_STREAM)])
def test_passthrough_is_byte_exact_and_finds_the_terminal_event_across_chunk_boundaries(fmt, data, size):
    converter = adapt.stream_adapter(fmt, fmt, model="m", body={})
    assert _run(converter, data, size) == data


@pytest.mark.parametrize("size", [1, 10_000])
@pytest.mark.parametrize("fmt, data, cut", [(OPENAI, OPENAI_STREAM, b"data: [DONE]\n\n"),
                                            (ANTHROPIC, ANTHROPIC_STREAM, b'event: message_stop\ndata: {"type":"message_stop"}\n\n')])
@pytest.mark.parametrize("client", [OPENAI, ANTHROPIC])
def test_a_stream_without_its_terminal_event_is_a_bad_response(fmt, data, cut, client, size):
    converter = adapt.stream_adapter(client, fmt, model="m", body={})
    with pytest.raises(BadUpstreamResponse, match="ended before"):
        _run(converter, data.replace(cut, b""), size)


@pytest.mark.parametrize("size", [1, 10_000])
def test_a_responses_stream_without_its_final_event_is_a_bad_response(size):
    converter = adapt.stream_adapter(RESPONSES, RESPONSES, model="m", body={})
    with pytest.raises(BadUpstreamResponse, match="ended before response.completed"):
        _run(converter, RESPONSES_STREAM[:RESPONSES_STREAM.index(b"event: response.incomplete")], size)


def test_the_terminal_text_inside_content_does_not_count():
    fake = dict(CHUNK, choices=[{"index": 0, "delta": {"content": "data: [DONE] event: message_stop"}, "finish_reason": None}])
    for fmt in (OPENAI, ANTHROPIC):
        converter = adapt.stream_adapter(fmt, fmt, model="m", body={})
        with pytest.raises(BadUpstreamResponse):
            _run(converter, f"data: {json.dumps(fake)}\n\n".encode(), 10_000)


def test_an_upstream_error_event_ends_a_passthrough_stream():
    converter = adapt.stream_adapter(ANTHROPIC, ANTHROPIC, model="m", body={})
    data = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    assert _run(converter, data, 5) == data


@pytest.mark.parametrize("fmt, answer, ok", [
    (OPENAI, {"choices": [{"message": {"role": "assistant", "content": "x"}}]}, True),
    (OPENAI, {"choices": []}, True),
    (OPENAI, {"foo": 1}, False),
    (OPENAI, {"choices": [{"text": "legacy completion"}]}, False),
    (OPENAI, [1, 2], False),
    (ANTHROPIC, {"type": "message", "content": []}, True),
    (ANTHROPIC, {"content": [{"type": "text", "text": "x"}]}, True),
    (ANTHROPIC, {"type": "error", "error": {}}, False),
    (ANTHROPIC, {"choices": []}, False),
])
def test_check_answer(fmt, answer, ok):
    if ok:
        adapt.check_answer(answer, fmt, "upstream 'x'")
    else:
        with pytest.raises(BadUpstreamResponse, match="^upstream 'x' answered 200 with JSON that is not"):
            adapt.check_answer(answer, fmt, "upstream 'x'")


# Pieces that make near-misses of every pattern likely: the scans by bytes.find must agree with the
# regex searches they replace on any bytes.
_PIECES = [b"\n", b"\r", b"\r\n", b"\n\n", b"data:", b"data: ", b"event:", b"event: ", b"[DONE]", b'{"error"',
           b"message_stop", b"error", b'"finish_reason":', b'"finish_reason": ', b'"', b"null", b"x", b" ", b"{}"]


def test_the_find_based_scans_agree_with_the_regex_searches():
    import re

    from hypothesis import given, settings, strategies as st

    event_end = re.compile(rb"\r\n\r\n|\n\n|\r\r")
    finished = re.compile(rb'"finish_reason": ?"')

    @settings(max_examples=3000, deadline=None, derandomize=True, database=None)
    @given(st.lists(st.sampled_from(_PIECES), max_size=30))
    def check(pieces: list[bytes]) -> None:
        window = b"".join(pieces)
        for fmt in (OPENAI, ANTHROPIC):
            assert adapt._has_terminal(window, fmt) == (adapt._TERMINALS[fmt].search(window) is not None), window
        cut = event_end.search(window)
        assert adapt._event_end(window) == (cut.span() if cut else None), window
        assert any(window.find(f) != -1 for f in adapt._FINISHED) == (finished.search(window) is not None), window

    check()


def _responses_stream(text: str, compact: bool = True) -> tuple[bytes, dict]:
    from tests.support.fake_upstream import RESPONSES, openai_text
    reply = openai_text(text)(RESPONSES, {"model": "m", "stream": True})
    separators = (",", ":") if compact else (", ", ": ")
    raw = b"".join(f"event: {name}\ndata: {json.dumps(json.loads(data), separators=separators)}\n\n".encode()
                   for name, data in reply.events)
    return raw, json.loads(reply.events[-1][1])["response"]


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("size", [1, 7, 31, 64, 4096])
@pytest.mark.parametrize("text", ["plain words", "it says response.completed and response.incomplete in its text"])
def test_a_passed_through_responses_stream_yields_its_final_response_for_the_store(size: int, text: str, compact: bool):
    """Written compactly (as OpenAI does), the final event is handed over unparsed with its id; written
    otherwise, it is parsed here. Either way the store gets the same response."""
    from runtime.http.stored import RawResponse

    raw, final = _responses_stream(text, compact)
    for store in (True, False):
        converter = adapt.stream_adapter(WireFormat.OPENAI_RESPONSES, WireFormat.OPENAI_RESPONSES, model="m",
                                         body={"input": "hi", **({} if store else {"store": False})})
        out = b"".join(b"".join(converter.feed(raw[i:i + size])) for i in range(0, len(raw), size)) + b"".join(converter.finish())
        assert out == raw  # byte for byte
        # (a text that names the final event holds the name earlier: the kept bytes are several events then)
        assert (converter.final_event is not None) == (store and compact and "response." not in text)
        kept = RawResponse(*converter.final_event, in_event=True).parsed() if converter.final_event else converter.response
        assert kept == (final if store else None)
        assert final["output"][0]["content"][0]["text"] == text


@pytest.mark.parametrize("data, rid", [
    (b'{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response"}}', "resp_1"),
    (b'{"type":"response.completed","response":{"id":"resp_\\u00e9"}}', None),  # an escape: parsed instead
    (b'{"type":"x","metadata":{"response":{"id":"inner"}},"response":{"id":"outer"}}', None),  # not at the top level
    (b'{"type":"x","list":[{"response":{"id":"inner"}}],"response":{"id":"outer"}}', None),
    (b'{"type":"response.completed","response":{"object":"response","id":"resp_1"}}', None),  # id not first
    (b'[{"response":{"id":"r"}}]', None),
    (b'{"response":{"id":"' + b"r" * 300 + b'"}}', None),
])
def test_the_final_events_response_id_is_read_only_where_it_is_unambiguous(data, rid):
    assert adapt.response_id_of(data) == rid


def test_the_one_event_reading_of_a_final_responses_event_agrees_with_the_sse_decoder():
    """``_ResponsesPassthrough._one_event`` (bytes.find) reads the usual ``event:`` + ``data:`` block
    as the SSE decoder does, and declines (None) anything it does not: never a different reading."""
    from hypothesis import given, settings, strategies as st

    from runtime.wire.sse import SSEDecoder

    one = adapt._ResponsesPassthrough._one_event
    usual = b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r"}}\n\n'
    assert one(usual) == ("response.completed", b'{"type":"response.completed","response":{"id":"r"}}')
    assert one(b"event:x\ndata:{}\n\n") == ("x", b"{}")

    read: list[bytes] = []

    @settings(max_examples=3000, deadline=None, derandomize=True, database=None)
    @given(st.lists(st.sampled_from(_PIECES + [b"response.completed", b": ping\n", b"id: 1\n"]), max_size=14),
           st.sampled_from([b"event: ", b"event:"]), st.sampled_from([b"\ndata: ", b"\ndata:", b"\n"]))
    def check(pieces: list[bytes], head: bytes, middle: bytes) -> None:
        raw = head + b"".join(pieces[:5]) + middle + b"".join(pieces[5:]) + b"\n\n"
        found = one(raw)
        if found is None:
            return
        read.append(raw)
        decoder = SSEDecoder()
        events = decoder.feed(raw) + decoder.flush()
        assert [(e.event, e.data) for e in events] == [(found[0], found[1].decode())], raw

    check()
    assert len(read) > 300  # the generated blocks exercise the reading, not only the refusals
    assert [one(b"event: a\ndata: 1\n\n" + tail) for tail in (b"event: b\ndata: 2\n\n", b"\n", b"data: 3\n\n")] == [None] * 3


@pytest.mark.parametrize("client", [ANTHROPIC, RESPONSES])
@pytest.mark.parametrize("size", [1, 10_000])
def test_a_chat_stream_reads_the_same_by_data_lines_or_by_the_decoder(client, size):
    """A chat upstream's whole reads are taken by their data lines (SSEDecoder.data_only), others by
    the decoder: same answer either way, invalid UTF-8 read as U+FFFD by both, not-JSON refused."""
    odd = json.dumps(CHUNK, ensure_ascii=False).replace('"hi"', '"hé \x00"').encode().replace(b"\x00", b"\xff")
    stream = b"data: " + odd + b'\n\ndata: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    out = _run(adapt.stream_adapter(client, OPENAI, model="m", body={}), stream, size).decode()
    assert '"hé \ufffd"' in out  # a delta, as orjson writes it (non-ASCII as is)
    with pytest.raises(BadUpstreamResponse, match="not valid JSON"):
        _run(adapt.stream_adapter(client, OPENAI, model="m", body={}), b"data: {nope\n\n", size)
