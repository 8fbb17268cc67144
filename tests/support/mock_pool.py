"""The provider stand-in for in-process app tests: runtime/upstream/http1.py's own Pool over in-memory sockets.

``MockPool(handler)`` is the real pool (its parser, its Response, its error classes) whose
connections reach no network: the bytes the gateway writes are parsed back into an
``httpx.Request`` for ``handler``, and the ``httpx.Response`` it returns is written back as
HTTP/1.1 bytes (content-length, or chunked for a body given as an async iterator, each chunk
as its own read), which the pool's parser reads as it would from a socket. Each connection
carries one request, then the server closes it.

What the handler raises becomes what the network would do: ``httpx.ConnectError`` or
``ConnectTimeout`` fails the connection (http1.ConnectError/ConnectTimeout), ``httpx.ReadTimeout``
the read (http1.ReadTimeout), any other ``httpx.TransportError`` (before the answer or inside
a streamed body) is the peer closing the socket (http1.Disconnected). Anything else it raises
is a bug in the test: the request fails (ProtocolError) and the error is kept in ``errors``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Optional

import httpx

from runtime.upstream import http1

Handler = Callable[[httpx.Request], Any]  # an httpx.Response, or an awaitable of one


class MockPool(http1.Pool):
    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handler = handler
        self.errors: list[BaseException] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        # A test may run the app on more than one loop (each TestClient block has its own); no
        # connection outlives its request here, so the running loop is always the right one.
        return asyncio.get_running_loop()

    async def _connect(self, endpoint: http1.Endpoint) -> http1._Connection:
        conn = http1._Connection(self, endpoint.origin)
        conn.connection_made(_MemoryTransport(self, conn, "https" if endpoint.tls else "http"))
        self._all.add(conn)
        return conn


class _MemoryTransport(asyncio.Transport):
    def __init__(self, pool: MockPool, conn: http1._Connection, scheme: str) -> None:
        super().__init__()
        self._pool = pool
        self._conn = conn
        self._scheme = scheme
        self._buffer = b""
        self._closing = False
        self._task: Optional[asyncio.Task] = None

    # -- what the pool calls
    def writelines(self, parts: Any) -> None:
        self.write(b"".join(parts))

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        head, sep, rest = self._buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        if len(rest) < length:
            return
        host = next(v for k, v in headers if k.lower() == "host")
        url = target if target.startswith(("http://", "https://")) else f"{self._scheme}://{host}{target}"
        request = httpx.Request(method, url, headers=[(k, v) for k, v in headers if k.lower() != "host"],
                                content=rest[:length])
        self._buffer = b""
        self._task = asyncio.get_running_loop().create_task(self._answer(request))

    def abort(self) -> None:
        self._closing = True
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()

    def close(self) -> None:
        self.abort()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    # -- the server side
    def _feed(self, data: bytes) -> None:
        if not self._closing:
            self._conn.data_received(data)

    def _fail(self, exc: BaseException) -> None:
        if self._closing:
            return
        if isinstance(exc, httpx.ConnectTimeout):
            self._conn._fail(http1.ConnectTimeout(str(exc)))
        elif isinstance(exc, httpx.ConnectError):
            self._conn._fail(http1.ConnectError(str(exc)))
        elif isinstance(exc, httpx.ReadTimeout):
            self._conn._fail(http1.ReadTimeout(str(exc)))
        elif isinstance(exc, httpx.TransportError):
            self._closing = True
            self._conn.connection_lost(ConnectionResetError(str(exc)))
        else:
            self._pool.errors.append(exc)
            self._conn._fail(http1.ProtocolError(f"the test's upstream handler raised {exc!r}"))

    async def _answer(self, request: httpx.Request) -> None:
        try:
            response = self._pool.handler(request)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            self._fail(exc)
            return
        reason = response.reason_phrase or "Status"
        fields = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-length", b"transfer-encoding")]
        try:
            body: Optional[bytes] = response.content
        except httpx.ResponseNotRead:  # an async iterator: sent chunked, chunk by chunk
            body = None
        framing = [(b"content-length", b"%d" % len(body))] if body is not None else [(b"transfer-encoding", b"chunked")]
        head = b"HTTP/1.1 %d %s\r\n" % (response.status_code, reason.encode("latin-1"))
        head += b"".join(k + b": " + v + b"\r\n" for k, v in [*fields, *framing]) + b"\r\n"
        if body is not None:
            self._feed(head + body)
        else:
            self._feed(head)
            try:
                async for chunk in response.aiter_raw():
                    if chunk:
                        await asyncio.sleep(0)  # each chunk its own read, as from a socket
                        self._feed(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except Exception as exc:
                self._fail(exc)
                return
            self._feed(b"0\r\n\r\n")
        if not self._closing:  # one request per connection: the server closes it
            self._closing = True
            self._conn.connection_lost(None)
