"""A lean HTTP/1.1 client for upstream POSTs: asyncio protocols, the httptools (llhttp) parser, and a
keep-alive pool per origin.

Stage: upstream transport (used only by runtime/upstream/client.py, which maps these errors into the
gateway's tree). Imports httptools and the standard library only.

Why not aiohttp: on one core a bare hypercorn app forwarding to a fake upstream spent about 120 µs
of every request inside aiohttp's client (request/response objects, tracing hooks, cookie and
timeout machinery) against about 16 µs here (`bench/gateway.py --clients`). What is kept:
keep-alive reuse with an idle expiry, a connection limit, connect and read (between-bytes)
timeouts, TLS, HTTP proxies (CONNECT tunnels for https, absolute-form for http), chunked and EOF-delimited bodies, read backpressure, and a retry on another
connection when a reused one turns out to be closed before answering.
A response that is closed before its end aborts the connection, so the upstream sees the client leave.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from typing import Any, AsyncIterator, Deque, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 256 * 1024  # buffered body bytes before reading from the socket pauses
_LOW_WATER = 64 * 1024
_MAX_PROXY_HEAD = 64 * 1024  # a proxy's answer to CONNECT larger than this is not an answer


class HTTPError(Exception):
    """Base of this client's errors."""


class ConnectError(HTTPError):
    """The connection could not be opened (refused, unreachable, TLS handshake failed)."""


class ConnectTimeout(HTTPError):
    """Opening the connection took longer than the connect timeout."""


class ReadTimeout(HTTPError):
    """No byte arrived within the read timeout."""


class DeadlineExceeded(HTTPError):
    """The body did not end by the deadline its reader set (``Response.deadline``)."""


_LATE = "the response did not end by its deadline"


class Disconnected(HTTPError):
    """The server closed or reset the connection before the response ended."""


class ProtocolError(HTTPError):
    """The server's bytes are not an HTTP/1.1 response."""


class Endpoint:
    """A URL parsed once: origin, TLS, the way there (direct or through ``proxy``), and the
    request-line-plus-Host prefix of every request head.

    ``proxy`` (runtime/upstream/egress.py's Proxy: ``host``, ``port``, ``display``, ``authorization``): an
    https origin is reached through a CONNECT tunnel, then TLS to the origin (SNI and certificate
    checked against the origin's name); an http origin gets absolute-form requests sent to the proxy.
    ``ssl_context``: the trust for this origin (None: the pool's). Pools are keyed by ``origin``,
    which includes both, so a tunnel is only reused for the same proxy, origin and trust.
    """

    __slots__ = ("origin", "tls", "host", "port", "prefix", "proxy", "ssl_context", "authority")

    def __init__(self, url: str, *, proxy: Any = None, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.proxy = proxy
        self.ssl_context = ssl_context if self.tls else None
        self.origin = (parts.scheme, self.host, self.port, proxy, self.ssl_context)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = f"{host}:{self.port}"
        authority = host if self.port == (443 if self.tls else 80) else self.authority
        if proxy is not None and not self.tls:  # RFC 9112 section 3.2.2: absolute-form to a proxy
            target = f"http://{authority}{target}"
            auth = f"proxy-authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            self.prefix = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n{auth}".encode("latin-1")
        else:
            self.prefix = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")

    def via(self) -> str:
        """Where the socket goes, for errors: the origin, or the proxy (never its credentials)."""
        return f"proxy {self.proxy.display}" if self.proxy is not None else self.authority


def header_block(headers: List[Tuple[str, str]]) -> bytes:
    """``name: value`` lines; a name or value that could split the head (CR, LF, NUL) is refused."""
    out = bytearray()
    for name, value in headers:
        if any(c in name for c in "\r\n\0:") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} has a character that is not allowed in HTTP headers")
        out += f"{name}: {value}\r\n".encode("latin-1")
    return bytes(out)


class _Connection(asyncio.Protocol):
    """One socket; carries one request at a time. The parser calls the ``on_*`` methods."""

    def __init__(self, pool: "Pool", origin: tuple) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.used = False  # has carried a request before (a stale keep-alive socket may be closed)
        self.idle_since = 0.0
        self.idle = False  # in the pool, no request in flight: any byte now is a protocol error
        self.timer: Optional[asyncio.TimerHandle] = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: List[Tuple[bytes, bytes]] = []
        self.head: Optional[asyncio.Future] = None
        self.chunks: Deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.error: Optional[HTTPError] = None
        self.waiter: Optional[asyncio.Future] = None
        self.got_bytes = False
        self.until_eof = False
        self.keep_alive = False
        self.informational = False
        self.overrun = False  # bytes past the end of the response: never reuse this socket
        self.paused = False
        self.last_data = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.idle:  # an HTTP/1.1 server speaks only when asked
            self.abort()
            return
        self.got_bytes = True
        self.last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"the upstream's response is not valid HTTP/1.1 ({exc})"))

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        if self.head is None and self.waiter is None and not self.chunks:
            return  # idle: the pool drops it on its next look
        if self.until_eof and exc is None and self.status and not self.complete:
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
            return
        if not self.complete:
            detail = f" ({type(exc).__name__}: {exc})" if exc else ""
            self._fail(Disconnected(f"the upstream closed the connection before the response ended{detail}"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: keep the first, drop the socket
            self.overrun = True
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.overrun:
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.overrun:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # "100 Continue" and friends: the real head follows
            self.informational = True
            self.headers = []
            return
        self.status = status
        names = {n for n, _ in self.headers}
        chunked = any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        self.until_eof = b"content-length" not in names and not chunked and status not in (204, 304)
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.overrun:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.overrun:
            return
        if self.informational:
            self.informational = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.head is not None and not self.head.done():
            self.head.set_result(None)
        self._wake()

    # -- used by Response
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: HTTPError) -> None:
        if self.error is None:
            self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def wait(self, future: asyncio.Future, timeout: float, expired: Optional[HTTPError] = None) -> None:
        """Await ``future``; ReadTimeout when no byte arrives for ``timeout`` seconds, or ``expired``
        when given, ``timeout`` seconds from now whatever arrives (a deadline)."""
        if expired is None:
            self.timer = self.loop.call_later(timeout, self._check_idle, future, timeout)
        else:
            self.timer = self.loop.call_later(timeout, self._expire, future, expired)
        try:
            await future
        finally:
            self.timer.cancel()

    def _expire(self, future: asyncio.Future, error: HTTPError) -> None:
        if not future.done():
            self._fail(error)

    def _check_idle(self, future: asyncio.Future, timeout: float) -> None:
        if future.done():
            return
        quiet = self.loop.time() - self.last_data
        if quiet >= timeout:
            self._fail(ReadTimeout(f"no byte from the upstream for {timeout:g} s"))
        else:  # bytes arrived meanwhile (a head still coming in): wait out the rest
            self.timer = self.loop.call_later(timeout - quiet, self._check_idle, future, timeout)

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


class Response:
    """Status and headers; the body is read whole (``read``) or as it arrives (``async for``).
    ``aclose()`` returns a finished connection to the pool and aborts an unfinished one."""

    __slots__ = ("_conn", "status", "headers", "_timeout", "_done", "deadline")

    def __init__(self, conn: _Connection, timeout: float) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._timeout = timeout
        self._done = False
        # Loop time (``loop.time()``) by which the body must have ended, else DeadlineExceeded; None: unbounded.
        # No timer of its own: checked per chunk, and it shortens the read timeout of a wait.
        self.deadline: Optional[float] = None

    def limit(self, seconds: float) -> None:
        """The body must end within ``seconds`` from now (``deadline``)."""
        self.deadline = self._conn.loop.time() + seconds

    def header(self, name: str) -> Optional[str]:
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None

    async def next_chunk(self) -> Optional[bytes]:
        """The body's next bytes as they arrive; None at its end."""
        conn = self._conn
        deadline = self.deadline
        if deadline is not None and not conn.complete and conn.loop.time() >= deadline:
            raise DeadlineExceeded(_LATE)
        while not conn.chunks:
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return None
            timeout, expired = self._timeout, None
            if deadline is not None and (left := deadline - conn.loop.time()) < timeout:
                timeout, expired = max(0.0, left), DeadlineExceeded(_LATE)
            conn.waiter = conn.loop.create_future()
            try:
                await conn.wait(conn.waiter, timeout, expired)
            finally:
                conn.waiter = None
        return conn.take()

    async def read(self, limit: Optional[int] = None) -> bytes:
        """The body (at most about ``limit`` bytes: reading stops once past it)."""
        parts = []
        size = 0
        try:
            while True:
                chunk = await self.next_chunk()
                if chunk is None:
                    break
                parts.append(chunk)
                size += len(chunk)
                if limit is not None and size > limit:
                    break
        finally:
            await self.aclose()
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await self.next_chunk()
                if chunk is None:
                    return
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and conn.error is None and not conn.closed and not conn.chunks:
            conn.pool._release(conn)
        else:
            conn.pool._drop(conn)


class Pool:
    """Keep-alive connections per origin, at most ``max_connections`` open (0 = no limit)."""

    def __init__(self, *, max_connections: int = 1000, keepalive_s: float = 30.0, connect_timeout_s: float = 10.0,
                 read_timeout_s: float = 600.0, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.ssl_context = ssl_context
        self._idle: Dict[tuple, List[_Connection]] = {}
        self._open = 0
        self._waiters: Deque[asyncio.Future] = collections.deque()
        self._all: set = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._next_sweep = 0.0
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def post(self, endpoint: Endpoint, headers: bytes, body: bytes) -> Response:
        """Send ``POST`` with the ``headers`` block (from ``header_block``) and ``body``; the response
        once its status and headers are in."""
        head = endpoint.prefix + headers + b"content-length: %d\r\n\r\n" % len(body)
        while True:  # ends: each retry drops one stale kept-alive socket; a fresh one is never retried
            conn = await self._acquire(endpoint)
            reused = conn.used
            conn.used = True
            conn.head = self.loop.create_future()
            conn.last_data = self.loop.time()
            try:
                conn.transport.writelines((head, body))  # type: ignore[union-attr]
                await conn.wait(conn.head, self.read_timeout_s)
            except BaseException as exc:
                self._drop(conn)  # a failure, a timeout, or the caller was cancelled: never reuse a half-used socket
                if isinstance(exc, Disconnected) and reused and not conn.got_bytes:
                    continue  # the server had closed the idle socket as we wrote: again, on another
                raise
            return Response(conn, self.read_timeout_s)

    async def _acquire(self, endpoint: Endpoint) -> _Connection:
        while True:
            if self.closed:
                raise ConnectError("the upstream client is closed")
            idle = self._idle.get(endpoint.origin)
            now = self.loop.time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self.keepalive_s:
                    conn.idle = False
                    conn._reset()
                    return conn
                self._drop(conn)
            if not self.max_connections or self._open < self.max_connections or self._close_idle_elsewhere(endpoint.origin):
                break
            waiter = self.loop.create_future()  # woken when a socket is released or closed
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        self._open += 1
        try:
            return await self._connect(endpoint)
        except BaseException:
            self._open -= 1
            self._wake_waiter()
            raise

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        ssl_context = None
        if endpoint.tls:
            ssl_context = endpoint.ssl_context
            if ssl_context is None:
                if self.ssl_context is None:
                    self.ssl_context = ssl.create_default_context()
                ssl_context = self.ssl_context
        proxy = endpoint.proxy
        sock: Optional[socket.socket] = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                factory = lambda: _Connection(self, endpoint.origin)  # noqa: E731
                if proxy is None:
                    _, conn = await self.loop.create_connection(
                        factory, endpoint.host, endpoint.port, ssl=ssl_context,
                        server_hostname=endpoint.host if ssl_context else None)
                elif ssl_context is None:  # plain http through the proxy: absolute-form requests
                    _, conn = await self.loop.create_connection(factory, proxy.host, proxy.port)
                else:
                    sock = await self._tunnel(endpoint)
                    _, conn = await self.loop.create_connection(factory, sock=sock, ssl=ssl_context,
                                                                server_hostname=endpoint.host)
                    sock = None  # the transport owns it now
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {endpoint.authority}" + (f" through {endpoint.via()}" if proxy else "")
                                 + f" took over {self.connect_timeout_s:g} s") from exc
        except ConnectError:
            raise
        except (OSError, ssl.SSLError) as exc:
            where = f" (through {endpoint.via()})" if proxy is not None else ""
            raise ConnectError(f"{type(exc).__name__}: {exc}{where}") from exc
        finally:
            if sock is not None:
                sock.close()
        self._all.add(conn)
        return conn

    async def _tunnel(self, endpoint: Endpoint) -> socket.socket:
        """A socket to the proxy with a CONNECT tunnel to ``endpoint``'s origin open (RFC 9110 section 9.3.6)."""
        proxy = endpoint.proxy
        loop = self.loop
        try:
            infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(f"proxy {proxy.display} could not be resolved: {exc}") from exc
        sock = None
        failure: Optional[OSError] = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
                break
            except OSError as exc:
                sock.close()
                sock, failure = None, exc
        if sock is None:
            raise ConnectError(f"proxy {proxy.display} could not be reached: {failure}")
        try:
            auth = f"proxy-authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            request = f"CONNECT {endpoint.authority} HTTP/1.1\r\nhost: {endpoint.authority}\r\n{auth}\r\n"
            await loop.sock_sendall(sock, request.encode("latin-1"))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise ConnectError(f"proxy {proxy.display} closed the connection instead of opening a tunnel "
                                       f"to {endpoint.authority}")
                head += chunk
                if len(head) > _MAX_PROXY_HEAD:
                    raise ConnectError(f"proxy {proxy.display} sent an oversized answer to CONNECT")
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
            fields = status_line.split(" ", 2)
            if len(fields) < 2 or not fields[0].startswith("HTTP/1.") or not fields[1].isdigit():
                raise ConnectError(f"proxy {proxy.display} answered CONNECT with something that is not HTTP: "
                                   f"{status_line[:80]!r}")
            if not 200 <= int(fields[1]) < 300:
                raise ConnectError(f"proxy {proxy.display} refused the tunnel to {endpoint.authority}: "
                                   f"{' '.join(fields[1:])[:120]}")
            if not head.endswith(b"\r\n\r\n"):
                raise ConnectError(f"proxy {proxy.display} sent bytes after its answer to CONNECT")
        except BaseException:
            sock.close()
            raise
        return sock

    def _release(self, conn: _Connection) -> None:
        if self.closed:
            self._drop(conn)
            return
        now = conn.idle_since = self.loop.time()
        conn.idle = True
        self._idle.setdefault(conn.origin, []).append(conn)
        if now >= self._next_sweep:
            self._sweep(now)
        self._wake_waiter()

    def _sweep(self, now: float) -> None:
        """Close idle sockets past their expiry, for every origin (at most twice per expiry period)."""
        self._next_sweep = now + self.keepalive_s / 2
        for conns in self._idle.values():
            expired = [c for c in conns if c.closed or now - c.idle_since >= self.keepalive_s]
            for conn in expired:
                conns.remove(conn)
                self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.abort()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_idle_elsewhere(self, origin: tuple) -> bool:
        for other, conns in self._idle.items():
            if other != origin and conns:
                self._drop(conns.pop(0))
                return True
        return False

    async def aclose(self) -> None:
        self.closed = True
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
        self._open = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectError("the upstream client is closed"))


__all__ = ["ConnectError", "ConnectTimeout", "Disconnected", "Endpoint", "HTTPError", "Pool", "ProtocolError",
           "ReadTimeout", "Response", "header_block"]
