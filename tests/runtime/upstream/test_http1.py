"""runtime/upstream/http1.py against a real socket server on 127.0.0.1 that answers scripted raw bytes:
framing (length, chunked, until EOF), keep-alive reuse and expiry, limits, timeouts, faults."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import pytest

from runtime.upstream import http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Counts connections; ``handler(reader, writer, n)`` answers each request (n = request index)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.tasks: set = set()

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Every handler ends (and closes its socket) here, so no transport is left for the GC to
        # warn about in some later test.
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def url(self, path: str = "/v1/chat/completions") -> http1.Endpoint:
        return http1.Endpoint(f"http://127.0.0.1:{self.port}{path}")

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.handler(reader, writer, len(self.requests) - 1)
                if writer.is_closing():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra + b"content-length: %d\r\n\r\n" % len(body) + body


def run(coro):
    return asyncio.run(coro)


def test_post_sends_head_and_body_and_reuses_the_connection():
    async def handler(reader, writer, n):
        writer.write(ok(b'{"n":%d}' % n))

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            headers = http1.header_block([("content-type", "application/json"), ("authorization", "Bearer k")])
            out = []
            for _ in range(3):
                r = await pool.post(srv.url(), headers, b'{"q":1}')
                assert r.status == 200 and r.header("Content-Type") == "application/json"
                out.append(await r.read())
            await pool.aclose()
            return srv, out

    srv, out = run(main())
    assert out == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert srv.connections == 1
    first = srv.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"authorization: Bearer k\r\n" in first and b"content-length: 7\r\n\r\n{\"q\":1}" in first


def test_chunked_body_arrives_chunk_by_chunk_before_the_end():
    gate = asyncio.Event

    async def main():
        release = gate()

        async def handler(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"7\r\ndata: 1\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")

        async with RawServer(handler) as srv:
            pool = http1.Pool()
            r = await pool.post(srv.url(), b"", b"{}")
            got = []
            async for chunk in r:
                got.append(chunk)
                release.set()  # the second chunk is only sent after the first one was read
            await pool.aclose()
            return got

    assert run(main()) == [b"data: 1", b"data: 2"]


def test_body_delimited_by_the_end_of_the_connection():
    async def handler(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            body = await (await pool.post(srv.url(), b"", b"{}")).read()
            body2 = await (await pool.post(srv.url(), b"", b"{}")).read()
            await pool.aclose()
            return body, body2, srv.connections

    assert run(main()) == (b"all of it", b"all of it", 2)


def test_connection_close_is_not_reused_and_expired_idle_sockets_are_replaced():
    async def handler(reader, writer, n):
        writer.write(ok(b"x", b"connection: close\r\n" if n == 0 else b""))

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool(keepalive_s=0.05)
            for _ in range(2):
                await (await pool.post(srv.url(), b"", b"")).read()  # 1st: close -> 2nd on a new socket
            await asyncio.sleep(0.1)  # the 2nd socket's idle time runs out
            await (await pool.post(srv.url(), b"", b"")).read()
            await pool.aclose()
            return srv.connections

    assert run(main()) == 3


def test_idle_sockets_of_other_origins_are_closed_once_expired():
    async def handler(reader, writer, n):
        writer.write(ok(b"x"))

    async def main():
        async with RawServer(handler) as a, RawServer(handler) as b:
            pool = http1.Pool(keepalive_s=0.1)
            await (await pool.post(a.url(), b"", b"")).read()
            await asyncio.sleep(0.15)  # a's socket expires; traffic to b sweeps it
            await (await pool.post(b.url(), b"", b"")).read()
            await asyncio.wait_for(a.closed.wait(), 5)
            left = pool._open
            await pool.aclose()
            return left

    assert run(main()) == 1  # only b's socket is still open


def test_a_keep_alive_socket_the_server_closed_is_retried_once_on_a_fresh_one():
    async def handler(reader, writer, n):
        writer.write(ok(b"fine"))
        await writer.drain()
        if n == 0:
            writer.close()  # no "connection: close": the client believes the socket is reusable

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            await (await pool.post(srv.url(), b"", b"")).read()
            await srv.closed.wait()
            await asyncio.sleep(0.05)
            body = await (await pool.post(srv.url(), b"", b"")).read()
            await pool.aclose()
            return body, srv.connections

    assert run(main()) == (b"fine", 2)


def test_a_reused_socket_closed_without_an_answer_is_retried_on_a_fresh_one():
    """The race a pool must survive: the server drops a kept-alive socket just as a request goes out."""
    async def handler(reader, writer, n):
        if n == 1:
            writer.close()  # read the request, answer nothing
            return
        writer.write(ok(b"%d" % n))

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            first = await (await pool.post(srv.url(), b"", b"")).read()
            second = await (await pool.post(srv.url(), b"", b"")).read()
            await pool.aclose()
            return first, second, srv.connections, len(srv.requests)

    assert run(main()) == (b"0", b"2", 2, 3)


def test_a_fresh_socket_closed_without_an_answer_is_an_error_not_a_loop():
    async def handler(reader, writer, n):
        writer.close()

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            with pytest.raises(http1.Disconnected, match="before the response ended"):
                await pool.post(srv.url(), b"", b"")
            await pool.aclose()
            return srv.connections

    assert run(main()) == 1


def test_read_timeout_when_the_server_goes_quiet_and_the_socket_is_dropped():
    async def handler(reader, writer, n):
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")  # then nothing
        await asyncio.sleep(5)

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool(read_timeout_s=0.2)
            with pytest.raises(http1.ReadTimeout, match="no byte from the upstream for 0.2 s"):
                await pool.post(srv.url(), b"", b"")
            r = await pool.post(srv.url(), b"", b"")
            with pytest.raises(http1.ReadTimeout):
                await r.read()
            await pool.aclose()
            return srv.connections

    assert run(main()) == 2  # the timed-out socket was not reused


async def _trickle(writer, chunks: int, gap_s: float) -> None:
    """A chunked 200 whose body is ``chunks`` one-byte chunks, ``gap_s`` apart."""
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    for _ in range(chunks):
        writer.write(b"1\r\n.\r\n")
        await writer.drain()
        await asyncio.sleep(gap_s)
    writer.write(b"0\r\n\r\n")


def test_a_trickling_body_is_not_a_timeout_while_bytes_keep_coming():
    async def handler(reader, writer, n):
        await _trickle(writer, 6, 0.06)

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool(read_timeout_s=0.15)  # total 0.36 s > timeout, gaps 0.06 s < timeout
            body = await (await pool.post(srv.url(), b"", b"")).read()
            await pool.aclose()
            return body

    assert run(main()) == b"......"


def test_a_deadline_cuts_a_trickling_body_and_drops_the_socket_but_not_a_finished_one():
    # Bytes keep coming (no read timeout), yet the body must end by ``Response.deadline``.
    async def handler(reader, writer, n):
        if n == 1:
            writer.write(ok(b"whole"))
            return
        await _trickle(writer, 40, 0.05)

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool(read_timeout_s=5)
            loop = asyncio.get_running_loop()
            r = await pool.post(srv.url(), b"", b"")
            r.limit(0.3)
            started, got = loop.time(), b""
            with pytest.raises(http1.DeadlineExceeded):
                while (chunk := await r.next_chunk()) is not None:
                    got += chunk
            elapsed = loop.time() - started
            await r.aclose()
            assert 0.25 < elapsed < 1.5 and 2 <= len(got) < 40, (elapsed, got)
            # A body already complete is handed over even when its deadline has passed meanwhile.
            r = await pool.post(srv.url(), b"", b"")
            await asyncio.sleep(0.05)  # the whole body is in
            r.limit(-1)
            assert await r.read() == b"whole"
            await pool.aclose()
            return srv.connections

    assert run(main()) == 2  # the cut socket was not reused


def test_refused_connection_and_connect_errors():
    async def main():
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        pool = http1.Pool()
        with pytest.raises(http1.ConnectError, match="ConnectionRefusedError|Connect call failed"):
            await pool.post(http1.Endpoint(f"http://127.0.0.1:{port}/x"), b"", b"")
        await pool.aclose()

    run(main())


def test_garbage_and_a_cut_off_body_are_errors_not_hangs():
    async def handler(reader, writer, n):
        if n == 0:
            writer.write(b"SMTP ready\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
            await writer.drain()
            writer.close()

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool(read_timeout_s=5)
            with pytest.raises(http1.ProtocolError, match="not valid HTTP/1.1"):
                await pool.post(srv.url(), b"", b"")
            r = await pool.post(srv.url(), b"", b"")
            with pytest.raises(http1.Disconnected, match="before the response ended"):
                await r.read()
            await pool.aclose()

    run(main())


def test_bytes_past_the_response_or_while_idle_retire_the_socket():
    """A second response to one request is ignored (the first stays whole); a byte sent while the
    socket sits idle in the pool retires it. Either way the next request gets a fresh socket."""
    async def handler(reader, writer, n):
        if n == 0:
            writer.write(ok(b"first") + ok(b"unasked"))
        elif n == 1:
            writer.write(ok(b"second"))
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\n")  # unsolicited, while the client's socket is idle
        else:
            writer.write(ok(b"third"))

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            bodies = []
            for _ in range(3):
                r = await pool.post(srv.url(), b"", b"")
                bodies.append((r.header("content-length"), await r.read()))
                await asyncio.sleep(0.05)
            await pool.aclose()
            return bodies, srv.connections

    bodies, connections = run(main())
    assert bodies == [("5", b"first"), ("6", b"second"), ("5", b"third")]
    assert connections == 3


def test_closing_a_stream_early_closes_the_connection_the_server_sees_it():
    async def handler(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read(1)  # returns b"" at EOF: the client left

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            r = await pool.post(srv.url(), b"", b"")
            async for chunk in r:
                assert chunk == b"first"
                break
            await r.aclose()
            await asyncio.wait_for(srv.closed.wait(), 5)
            await pool.aclose()
            return srv.connections

    assert run(main()) == 1


def test_connection_limit_queues_requests_on_one_socket():
    async def handler(reader, writer, n):
        await asyncio.sleep(0.02)
        writer.write(ok(b"%d" % n))

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool(max_connections=1)

            async def one():
                return await (await pool.post(srv.url(), b"", b"")).read()

            bodies = await asyncio.gather(*(one() for _ in range(4)))
            await pool.aclose()
            return sorted(bodies), srv.connections

    assert run(main()) == ([b"0", b"1", b"2", b"3"], 1)


def test_informational_response_then_the_real_one_and_headers_split_across_packets():
    async def handler(reader, writer, n):
        for piece in (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-long-hea", b"der: val", b"ue-1\r\ncontent-length: 2\r\n\r\nok"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            r = await pool.post(srv.url(), b"", b"")
            out = (r.status, r.header("x-long-header"), await r.read())
            await pool.aclose()
            return out

    assert run(main()) == (201, "value-1", b"ok")


def test_a_large_body_is_read_whole_under_backpressure():
    big = b"y" * (3 * 1024 * 1024)

    async def handler(reader, writer, n):
        writer.write(ok(big))
        await writer.drain()

    async def main():
        async with RawServer(handler) as srv:
            pool = http1.Pool()
            r = await pool.post(srv.url(), b"", b"z" * 200_000)  # request body bigger than one write too
            body = await r.read()
            await pool.aclose()
            return len(body), len(srv.requests[0])

    size, sent = run(main())
    assert size == len(big) and sent > 200_000


def test_header_injection_and_bad_urls_are_refused():
    with pytest.raises(ValueError, match="not allowed"):
        http1.header_block([("x-a", "ok\r\nx-evil: 1")])
    with pytest.raises(ValueError, match="not an http"):
        http1.Endpoint("ftp://example.com/x")
    e = http1.Endpoint("https://api.example.com/v1/chat?api-version=2024")
    assert e.tls and e.port == 443 and e.prefix == b"POST /v1/chat?api-version=2024 HTTP/1.1\r\nhost: api.example.com\r\n"
