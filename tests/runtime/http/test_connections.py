"""runtime/http/connections.py's h11 connection frames every response exactly as h11's own does: the
bytes of each response head and body are compared over requests of every kind (HTTP/1.0 and 1.1,
HEAD, keep-alive or close, several per connection) and responses of every framing."""

from __future__ import annotations

import itertools

import h11
import pytest

from runtime.http.connections import _H11Connection

REQUESTS = [
    (b"GET", b"1.1", []), (b"POST", b"1.1", [(b"content-length", b"2")]), (b"HEAD", b"1.1", []),
    (b"GET", b"1.1", [(b"connection", b"close")]), (b"GET", b"1.0", []), (b"HEAD", b"1.0", []),
    (b"POST", b"1.1", [(b"Connection", b"keep-alive, Upgrade"), (b"content-length", b"2")]),
]
RESPONSES = [
    (200, [(b"content-type", b"text/event-stream"), (b"X-Arch-Route", b"code"), (b"cache-control", b"no-cache")]),
    (200, [(b"content-length", b"5"), (b"content-type", b"application/json")]),
    (200, [(b"Content-Length", b"5"), (b"content-length", b"5")]),
    (200, [(b"transfer-encoding", b"chunked"), (b"x-a", b"1")]),
    (200, [(b"Transfer-Encoding", b"CHUNKED"), (b"content-length", b"9")]),
    (200, [(b"connection", b"keep-alive"), (b"x-b", b"2")]),
    (200, [(b"Connection", b"Upgrade, keep-alive"), (b"content-length", b"5")]),
    (204, [(b"x-c", b"3")]),
    (304, [(b"etag", b'"x"')]),
    (500, []),
]


def _exchange(cls: type[h11.Connection], request: tuple, response: tuple, repeat: int) -> bytes:
    """The bytes ``cls`` writes for ``response`` to ``request``, ``repeat`` times on one connection
    while it stays open, with the connection's states after each."""
    method, version, extra = request
    conn = cls(h11.SERVER)
    out = b""
    for _ in range(repeat):
        head = b"".join(name + b": " + value + b"\r\n" for name, value in [(b"host", b"x"), *extra])
        conn.receive_data(method + b" / HTTP/" + version + b"\r\n" + head + b"\r\n" + (b"{}" if method == b"POST" else b""))
        while not isinstance(conn.next_event(), h11.EndOfMessage):
            pass
        status, response_headers = response
        out += conn.send(h11.Response(status_code=status, headers=response_headers))
        body = b"hello" if status not in (204, 304) and method != b"HEAD" else b""
        out += (conn.send(h11.Data(data=body)) or b"") if body else b""
        out += conn.send(h11.EndOfMessage()) or b""
        out += repr((conn.our_state, conn.their_state)).encode()
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            break
        conn.start_next_cycle()
    return out


@pytest.mark.parametrize("request_, response", list(itertools.product(REQUESTS, RESPONSES)))
def test_the_response_head_is_framed_as_h11_frames_it(request_, response) -> None:
    expected = _exchange(h11.Connection, request_, response, repeat=2)
    assert _exchange(_H11Connection, request_, response, repeat=2) == expected


LINES = [
    (b"content-type", b"application/json"), (b"X-Arch-Route", b"code"), (b"x-e", b""), (b"x-f", b"a\tb c"),
    (b"x-g", b"\x80\xff obs-text"), (b"content-length", b"12"), (b"Content-Length", b"x1"), (b"x y", b"1"),
    (b"", b"v"), (b"x:", b"v"), (b"x-h", b"a\r\nb"), (b"x-i", b"a\nb"), (b"x-j", b"\x00"), (b"x-k", b" lead"),
    (b"x-l", b"trail "), (b"x-m", b"a\x7fb"), (b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked"),
]


def _made(check: bool, lines: list[tuple[bytes, bytes]]) -> object:
    """What making a response with ``lines`` gives: its header lines, or h11's refusal."""
    from runtime.http.connections import check_header_lines

    try:
        if check:
            check_header_lines(lines)
            response = h11.Response(status_code=200, headers=lines, _parsed=True)
        else:
            response = h11.Response(status_code=200, headers=lines)
    except h11.LocalProtocolError as exc:
        return ("refused", str(exc))
    return response.headers.raw_items()


@pytest.mark.parametrize("line", LINES)
def test_header_lines_checked_once_are_refused_and_kept_as_h11_does(line) -> None:
    lines = [(b"content-type", b"text/plain"), line]
    expected = _made(False, lines)
    assert _made(True, lines) == expected
    assert _made(True, lines) == expected  # the second time from what was checked before


def _events(cls: type[h11.Connection], wire: bytes, size: int) -> list[object]:
    """The events (data as bytes) ``cls`` reads from ``wire`` fed ``size`` bytes at a time."""
    conn = cls(h11.SERVER)
    out: list[object] = []
    for i in range(0, len(wire), size):
        conn.receive_data(wire[i:i + size])
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                return out + [("refused", str(exc))]
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            out.append(("data", bytes(event.data)) if isinstance(event, h11.Data) else event)
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
    return out


BODY = bytes(range(256)) * 40
WIRES = [
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY),
    b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
    (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc" * 2) + b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.mark.parametrize("size", [1, 7, 100, 4096, 1 << 20])
@pytest.mark.parametrize("wire", WIRES)
def test_request_bodies_are_read_as_h11_reads_them(wire, size) -> None:
    assert _events(_H11Connection, wire, size) == _events(h11.Connection, wire, size)
