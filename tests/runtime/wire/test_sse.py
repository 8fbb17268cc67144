"""runtime/wire/sse.py: the incremental decoder and the encoders, on the recorded streams and on edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.wire.sse import DONE, SSEDecoder, SSEEvent, encode_event, encode_json

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
STREAMS = sorted(WIRE.glob("*/*.sse"), key=lambda p: (p.parent.name, p.name))


def _decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_streams_decode_the_same_whole_or_byte_by_byte(path: Path) -> None:
    raw = path.read_bytes()
    whole = _decode(raw)
    assert whole, "every recorded stream holds events"
    assert _decode(*(raw[i : i + 1] for i in range(len(raw)))) == whole
    for event in whole:
        if event.data != "[DONE]":
            json.loads(event.data)  # each data payload is one JSON document


def test_anthropic_event_names_and_openai_done() -> None:
    anthropic = _decode((WIRE / "anthropic_messages" / "text_cache_usage.stream.sse").read_bytes())
    assert [e.event for e in anthropic][:3] == ["message_start", "content_block_start", "ping"]
    assert all(json.loads(e.data)["type"] == e.event for e in anthropic)
    openai = _decode((WIRE / "openai_chat" / "text_usage.stream.sse").read_bytes())
    assert openai[-1] == SSEEvent(None, "[DONE]") and all(e.event is None for e in openai)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_line_endings(newline: bytes) -> None:
    raw = newline.join([b"event: a", b"data: 1", b"", b"data: 2", b"", b""])
    assert _decode(raw) == [SSEEvent("a", "1"), SSEEvent(None, "2")]


def test_crlf_split_between_chunks_is_one_line_ending() -> None:
    assert _decode(b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n") == [SSEEvent(None, "1"), SSEEvent(None, "2")]


def test_comments_multiline_data_id_and_field_rules() -> None:
    raw = b": keep-alive\nid: 7\ndata: first\ndata:second\ndata\nretry: 100\nunknown: x\n\n"
    assert _decode(raw) == [SSEEvent(None, "first\nsecond\n", "7")]


def test_event_name_resets_after_dispatch_but_id_persists() -> None:
    raw = b"event: one\nid: 1\ndata: a\n\ndata: b\n\n"
    assert _decode(raw) == [SSEEvent("one", "a", "1"), SSEEvent(None, "b", "1")]


def test_event_without_data_is_not_dispatched() -> None:
    assert _decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent(None, "x")]


def test_utf8_split_inside_a_character_and_bom() -> None:
    raw = "\ufeffdata: café ☕\n\n".encode("utf-8")
    chunks = [raw[i : i + 1] for i in range(len(raw))]
    assert _decode(*chunks) == [SSEEvent(None, "café ☕")]


def test_flush_delivers_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {\"a\": 1}") == []
    assert decoder.flush() == [SSEEvent(None, '{"a": 1}')]
    assert decoder.flush() == []


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert _decode(b"data: \xff\xfe\n\n") == [SSEEvent(None, "\ufffd\ufffd")]


def test_encoders() -> None:
    assert encode_event("a\nb", "message_delta") == b"event: message_delta\ndata: a\ndata: b\n\n"
    assert encode_event("x") == b"data: x\n\n"
    assert encode_json({"type": "ping", "t": "é"}, event="ping") == 'event: ping\ndata: {"type":"ping","t":"é"}\n\n'.encode()
    assert encode_json({"k": "line\nbreak"}) == b'data: {"k":"line\\nbreak"}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    with pytest.raises(ValueError):
        encode_event("x", "bad\nname")


def test_encode_then_decode_is_identity() -> None:
    payloads = [("a\r\nb\rc", None), ("", "empty"), ('{"x": [1, 2]}', "message_start")]
    raw = b"".join(encode_event(data, event) for data, event in payloads)
    assert [(e.data, e.event) for e in _decode(raw)] == [("a\nb\nc", None), ("", "empty"), ('{"x": [1, 2]}', "message_start")]


# -- first_event (judging a stream's start) against the incremental decoder -----------------------

_SSE_PIECES = [b"data: {}", b"data:{\"a\":1}", b"data: [DONE]", b"event: error", b"event: message_start", b": ping",
               b"id: 7", b"retry: 10", b"data", b"data: \xc3", b"\xa9", b"\xef\xbb\xbf", b"", b"x: y"]
_SSE_ENDS = [b"\n", b"\r\n", b"\r"]


def test_first_event_is_the_decoders_first_event() -> None:
    from hypothesis import given, settings, strategies as st

    from runtime.wire.sse import SSEDecoder, first_event

    lines = st.lists(st.tuples(st.sampled_from(_SSE_PIECES), st.sampled_from(_SSE_ENDS)), max_size=8)

    @given(lines)
    @settings(max_examples=500, deadline=None, derandomize=True, database=None)
    def check(parts: list[tuple[bytes, bytes]]) -> None:
        block = b"".join(piece + end for piece, end in parts)
        # as the stream judge passes it too: cut before the blank line, the last line without its end
        for cut in (block, block[:-len(parts[-1][1])] if parts else block):
            decoder = SSEDecoder()
            events = decoder.feed(cut) + decoder.flush()
            assert first_event(cut, stream_start=True) == (events[0] if events else None), cut

    check()
    usual = b'event: response.created\ndata: {"type":"response.created"}'  # the one-event-line, one-data-line reading
    assert first_event(usual) == SSEEvent("response.created", '{"type":"response.created"}', None)
    assert first_event(b"event:x\ndata:1") == SSEEvent("x", "1", None)


def test_the_stream_judge_gives_one_verdict_however_the_bytes_are_cut() -> None:
    from hypothesis import given, settings, strategies as st

    from runtime.wire.adapt import FirstEvent
    from runtime.errors import BadUpstreamResponse
    from runtime.wire import WireFormat

    def verdict(chunks: list[bytes]) -> str:
        judge = FirstEvent(WireFormat.OPENAI_CHAT, "upstream 'x'")
        try:
            for chunk in chunks:
                if judge.feed(chunk):
                    return "ok"
            judge.end()
            return "ok"
        except BadUpstreamResponse as exc:
            return str(exc)

    streams = st.sampled_from([b": ping\n\ndata: {\"id\":1}\n\n", b"\xef\xbb\xbfdata: {}\r\n\r\n", b"data: nope\n\n",
                               b"data: [DONE]\n\n", b"data: {\"error\":{\"message\":\"no\"}}\n\n", b": a\r\r: b\n\ndata: {}",
                               b"event: x\ndata: {}\n\n", b"data: {\"a\":\n", b": only comments\n\n", b"data: []\n\n"])

    @given(streams, st.lists(st.integers(1, 40), max_size=6))
    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    def check(stream: bytes, cuts: list[int]) -> None:
        chunks, rest = [], stream
        for size in cuts:
            chunks.append(rest[:size])
            rest = rest[size:]
        chunks.append(rest)
        assert verdict([c for c in chunks if c]) == verdict([stream])

    check()


def test_data_only_reads_what_feed_reads_or_declines() -> None:
    """``SSEDecoder.data_only``, the translated streams' short reading: for any stream cut anywhere,
    reading each read with it where it answers (``feed`` where it declines) gives the data ``feed``
    alone gives, event for event (as bytes, UTF-8 of that text where the bytes are valid UTF-8)."""
    from hypothesis import given, settings, strategies as st

    usual = st.tuples(st.sampled_from([b'data: {"choices":[]}', b"data: [DONE]", b"data: \xc3\xa9", b"data: \xff"]),
                      st.just(b"\n\n"))  # what OpenAI-format upstreams send
    lines = st.lists(usual | st.tuples(st.sampled_from(_SSE_PIECES), st.sampled_from(_SSE_ENDS + [b"\n\n"])), max_size=10)
    answered: list[bool] = []

    @given(lines, st.lists(st.integers(0, 200), max_size=4))
    @settings(max_examples=600, deadline=None, derandomize=True, database=None)
    def check(parts: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
        raw = b"".join(piece + end for piece, end in parts)
        edges = sorted({0, len(raw), *(c for c in cuts if c < len(raw))})
        reads = [raw[a:b] for a, b in zip(edges, edges[1:])]
        alone = SSEDecoder()
        expected = [e.data for read in reads for e in alone.feed(read)] + [e.data for e in alone.flush()]
        mixed = SSEDecoder()
        got: list[str] = []
        for read in reads:
            data = mixed.data_only(read)
            answered.append(data is not None)
            got += [d.decode("utf-8", "replace") for d in data] if data is not None else [e.data for e in mixed.feed(read)]
        got += [e.data for e in mixed.flush()]
        assert got == expected, reads

    check()
    assert sum(answered) > 20  # the short reading was taken, not only declined
    assert SSEDecoder().data_only(b"data: a\n\ndata: b\n\n") == [b"a", b"b"]
    assert SSEDecoder().data_only(b"\xef\xbb\xbfdata: a\n\n") is None  # a BOM: feed skips it
    assert SSEDecoder().data_only(b"data: a\r\n\r\n") is None and SSEDecoder().data_only(b"data: a\n") is None
