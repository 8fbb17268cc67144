"""Client connections under hypercorn: released as soon as the client closes, capped per process,
and HTTP-layer rejections answered as JSON in the format the path suggests.

Stage: entry (``install`` is called by runtime/serve.py before hypercorn serves, in each worker).
Imports hypercorn, h11, runtime.http.asgi and runtime.errors.

Why a shim, and what it changes in hypercorn 0.17 (to be proposed upstream; each part is one hook):

- Closed sockets. On EOF from the client, hypercorn's TCPServer hands ``Closed`` to its h11
  protocol, which ignores it when no request is in flight (an idle keep-alive connection, or a
  bare connect-then-close); the server then waits for its keep-alive timer before it closes the
  socket, so every such socket sits in CLOSE_WAIT for ``keep_alive_timeout`` seconds. At a few
  hundred new connections a second that exhausts the file limit. ``_Server`` stops the idle timer
  once the peer has gone and never restarts it, so the socket is closed as soon as the request (if
  any) has finished. The upstream fix is the same: ``await self.idle_task.stop()`` after
  ``_read_data``'s loop, and no idle restart after EOF.
- A connection cap (``ARCHC_MAX_CLIENT_CONNECTIONS``): beyond it, a new connection's request is
  answered at once with 503 (JSON, the client's format) and closed; established ones go on.
- HTTP-layer rejections (h11's 400/431 for broken framing or oversized headers) carry an error
  body in the client's format, not an empty one.
- Response heads validated once. To frame a response of unknown length, h11 rebuilds its header
  list twice (``set_comma_header``: no content-length, transfer-encoding chunked) and runs every
  header through its name and value regexes again each time, although they were validated when the
  ``Response`` was made (about 25 µs of each streamed answer here, 14 headers). ``_H11Connection``
  makes the same framing decisions on the validated headers; a test compares its bytes with h11's.
  And the one check left runs once per distinct header line, not per response: most lines of an
  answer (content type, the decision headers) repeat from one request to the next.
- Request bodies copied less. h11's receive buffer slices each body part twice (once to see
  whether there is one); ``_ReceiveBuffer`` slices it once, and hands the buffer itself over when
  the part is all of it (the usual case): a 1 MB body is copied three times on its way in, not five.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable

import h11
import h11._abnf as h11_abnf
import h11._connection as h11_connection
import h11._headers as h11_headers
import h11._receivebuffer as h11_receivebuffer
import hypercorn.asyncio.run as hypercorn_run
import hypercorn.protocol as hypercorn_protocol
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import RawData
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol

from runtime.http.asgi import error_body as _error_body, format_for_path
from runtime.errors import HTTPLayerError

log = logging.getLogger("archc.runtime")

_REJECT_LOG_EVERY_S = 10.0
_REQUEST_LINE = re.compile(rb"^[A-Z]{1,16} (\S{1,2048})")
_HEAD_KEEP = 4096  # bytes of a request's start kept to name its path in an HTTP-layer error


@dataclass
class ClientConnections:
    """This process's client connections: the cap, the open count, and what the cap turned away."""

    cap: int
    open: int = 0
    peak: int = 0
    rejected: int = 0
    _logged_at: float = 0.0
    _unlogged: int = 0

    def admit(self) -> bool:
        if self.open >= self.cap:
            self.rejected += 1
            self._unlogged += 1
            now = time.monotonic()
            if now - self._logged_at >= _REJECT_LOG_EVERY_S:  # one line per 10 s under a flood, with the count
                log.warning("client connection cap reached (%d open, cap %d, ARCHC_MAX_CLIENT_CONNECTIONS): %d new "
                            "connection(s) answered 503 since the last report", self.open, self.cap, self._unlogged)
                self._logged_at, self._unlogged = now, 0
            return False
        self.open += 1
        self.peak = max(self.peak, self.open)
        return True

    def release(self) -> None:
        self.open -= 1


CLIENTS = ClientConnections(cap=10_000)  # the process's one instance; install() sets the cap


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def default_cap(file_limit: int, upstream_connections: int) -> int:
    """Client connections a process takes by default: 10,000, or what the file limit leaves after the
    upstream pool and a reserve (files, the router, logs)."""
    return max(16, min(10_000, file_limit - upstream_connections - 128))


def install(cap: int | None, upstream_connections: int) -> ClientConnections:
    """Put the shim in place (idempotent), raise the file limit, set the cap; says the figures in the log."""
    before, after = raise_file_limit()
    CLIENTS.cap = cap if cap is not None else default_cap(after, upstream_connections)
    hypercorn_run.TCPServer = _Server  # type: ignore[misc]  # worker_serve looks the class up per connection
    hypercorn_protocol.H11Protocol = _H11  # type: ignore[misc]  # ProtocolWrapper likewise
    raised = f" (raised from {before})" if after != before else ""
    log.info("open files limit %d%s; client connections capped at %d per process", after, raised, CLIENTS.cap)
    return CLIENTS


def error_body(status: int, message: str, path: str | None) -> bytes:
    """An HTTP-layer error as JSON in the format ``path`` suggests (OpenAI's unless it is /v1/messages...)."""
    return _error_body(HTTPLayerError(status, message), format_for_path(path))


def _path_of(head: bytes) -> str | None:
    match = _REQUEST_LINE.match(head)
    return match.group(1).decode("latin-1").split("?", 1)[0] if match else None


_MESSAGES = {413: "request too large", 414: "request target too long"}


class _Server(TCPServer):
    """hypercorn's TCPServer, closing as soon as the client has gone, and under the process's cap.
    Nothing here runs per request or per send: the EOF swaps the idle timer for one that closes.
    The idle timer is a timer (``_IdleTimer``), not a task restarted around every request."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.idle_task = _IdleTimer(self)

    async def run(self) -> None:
        if not CLIENTS.admit():
            await self._reject()
            return
        try:
            await super().run()
        finally:
            CLIENTS.release()

    async def _read_data(self) -> None:
        await super()._read_data()  # returns at EOF or a read error, after handing Closed to the protocol
        await self.idle_task.stop()  # nothing will arrive: do not wait for the keep-alive timer
        self.idle_task = _CloseWhenIdle(self._close)  # a response that finishes after this closes at once

    async def _reject(self) -> None:
        """503 to a connection over the cap: read what the client sent first (briefly), answer in its
        format, close. Reading first keeps the kernel from resetting the socket over unread bytes."""
        try:
            head = await asyncio.wait_for(self.reader.read(_HEAD_KEEP), 1.0)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            head = b""
        body = error_body(503, "the gateway has too many open connections; retry shortly", _path_of(head))
        try:
            self.writer.write(_response(503, body, retry_after=True))
            await asyncio.wait_for(self.writer.drain(), 1.0)
        except (asyncio.TimeoutError, ConnectionError, OSError, RuntimeError):
            pass
        await self._close()


class _IdleTimer:
    """hypercorn's keep-alive idle timeout without a task per request. hypercorn restarts a task when
    a response ends and cancels it when the next request begins (``AsyncioSingleTask``): two tasks
    made and cancelled per request, a timer inside ``asyncio.wait_for``, and the request waiting
    while the cancellation runs through the event loop. Here ``restart`` arms a ``call_later``
    handle and ``stop`` cancels it; when it fires, or the worker shuts down while the connection is
    idle, the connection is closed as hypercorn's ``_idle_timeout`` does."""

    __slots__ = ("server", "handle", "closing")
    _idle: "dict[Any, set[_IdleTimer]]" = {}  # worker context -> its idle timers (for shutdown)

    def __init__(self, server: TCPServer) -> None:
        self.server = server
        self.handle: asyncio.TimerHandle | None = None
        self.closing: asyncio.Task[None] | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        self._cancel()
        context = self.server.context
        if context.terminated.is_set():
            self._fire()
            return
        self.handle = self.server.loop.call_later(self.server.config.keep_alive_timeout, self._fire)
        idle = self._idle.get(context)
        if idle is None:
            idle = self._idle[context] = set()
            watcher = self.server.loop.create_task(self._watch(context, idle))
            _SHUTDOWN_WATCHERS.add(watcher)
            watcher.add_done_callback(_SHUTDOWN_WATCHERS.discard)
        idle.add(self)

    async def stop(self) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
            self._idle.get(self.server.context, set()).discard(self)

    def _fire(self) -> None:
        self._cancel()
        if self.closing is None:
            self.closing = self.server.loop.create_task(self.server._initiate_server_close())

    @classmethod
    async def _watch(cls, context: Any, idle: "set[_IdleTimer]") -> None:
        """Once the worker is shutting down, close the connections idle then (hypercorn's idle task
        waited on the same event)."""
        try:
            await context.terminated.wait()
            for timer in list(idle):
                timer._fire()
        finally:
            cls._idle.pop(context, None)


_SHUTDOWN_WATCHERS: set[asyncio.Task[None]] = set()  # referenced, so the loop does not drop them


class _CloseWhenIdle:
    """The idle timer of a connection whose peer has gone: hypercorn restarts it when a response
    finishes (``Updated(idle=True)``); then no next request can come, so the socket is closed."""

    def __init__(self, close: Callable[[], Awaitable[None]]) -> None:
        self.close = close

    async def restart(self, task_group: Any, action: Any) -> None:
        await self.close()

    async def stop(self) -> None:
        return None


def _response(status: int, body: bytes, *, retry_after: bool = False) -> bytes:
    extra = b"retry-after: 1\r\n" if retry_after else b""
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n")
    return head.encode() + extra + b"\r\n" + body


class _ReceiveBuffer(h11_receivebuffer.ReceiveBuffer):
    """h11's receive buffer; a body part is sliced once, or not at all when it is the whole buffer."""

    def maybe_extract_at_most(self, count: int) -> bytearray | None:
        if not self._data:
            return None
        if count < len(self._data):
            return self._extract(count)
        out, self._data = self._data, bytearray()
        self._next_line_search = self._multiple_lines_search = 0
        return out


class _H11Connection(h11.Connection):
    """h11's server connection, framing a response on its already validated headers: the same
    decisions as ``h11.Connection._clean_up_response_headers_for_sending`` (h11 0.16), without
    running every header through the regexes twice more; and reading into ``_ReceiveBuffer``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receive_buffer = _ReceiveBuffer()

    def _clean_up_response_headers_for_sending(self, response: h11.Response) -> h11.Response:
        method = self._request_method
        framing, _ = h11_connection._body_framing(b"GET" if method == b"HEAD" else method, response)
        headers, need_close = response.headers, False
        if framing in ("chunked", "http/1.0"):  # a body of unknown length
            headers = _set_header(headers, b"content-length", [])
            if self.their_http_version is None or self.their_http_version < b"1.1":
                headers = _set_header(headers, b"transfer-encoding", [])  # HTTP/1.0 (or no valid request): close-delimited
                need_close = method != b"HEAD"
            else:
                headers = _set_header(headers, b"transfer-encoding", [b"chunked"])
        if not self._cstate.keep_alive or need_close:
            connection = set(h11_headers.get_comma_header(headers, b"connection"))
            connection.discard(b"keep-alive")
            connection.add(b"close")
            headers = _set_header(headers, b"connection", sorted(connection))
        if headers is response.headers:
            return response
        return h11.Response(headers=headers, status_code=response.status_code, http_version=response.http_version,
                            reason=response.reason)


_FIELD_NAME = re.compile(h11_abnf.field_name.encode("ascii"))
_FIELD_VALUE = re.compile(h11_abnf.field_value.encode("ascii"))
_CHECKED: set[tuple[bytes, bytes]] = set()  # header lines that passed, up to _CHECKED_KEEP (then forgotten at once)
_CHECKED_KEEP = 4096


def check_header_lines(headers: list[tuple[bytes, bytes]]) -> None:
    """h11's checks of a response's header lines (``Illegal header name/value``, LocalProtocolError),
    each distinct (name, value) checked once: what ``h11.Response(headers)`` checks on every response."""
    for line in headers:
        if line in _CHECKED:
            continue
        name, value = line
        if _FIELD_NAME.fullmatch(name) is None:
            raise h11.LocalProtocolError(f"Illegal header name {name!r}")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise h11.LocalProtocolError(f"Illegal header value {value!r}")
        if len(_CHECKED) >= _CHECKED_KEEP:
            _CHECKED.clear()
        _CHECKED.add(line)


def _set_header(headers: h11_headers.Headers, name: bytes, values: list[bytes]) -> h11_headers.Headers:
    """``headers`` without ``name``, then one ``name: value`` per value (h11's set_comma_header), on
    the validated (raw name, name, value) triples: the new values are h11's own constants or
    lowercased parts of a validated value."""
    items = [item for item in headers._full_items if item[1] != name]
    items += [(name.title(), name, value) for value in values]
    return h11_headers.Headers(items)


class _H11(H11Protocol):
    """hypercorn's h11 protocol, whose own error answers (400, 431) carry a JSON body. The error
    path runs inside hypercorn's ``except h11.RemoteProtocolError`` (the error is ``sys.exception()``);
    per event, only a reference to the bytes read between requests is kept, to name the path."""

    _between = b""  # the last bytes read while no request was in flight: the start of the next one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection = _H11Connection(h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size)

    async def handle(self, event: Any) -> None:
        if self.stream is None and type(event) is RawData:
            self._between = event.data
        await H11Protocol.handle(self, event)

    async def stream_send(self, event: Any) -> None:
        if type(event) is Response and event.status_code >= 200:
            # hypercorn's own answer head, its lines checked by ``check_header_lines`` instead of by h11 per response
            headers = [*event.headers, *self.config.response_headers("h11")]
            if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                headers.append((b"connection", b"close"))
            check_header_lines(headers)
            await self._send_h11_event(h11.Response(headers=headers, status_code=event.status_code, _parsed=True))
            return
        await H11Protocol.stream_send(self, event)

    async def _send_error_response(self, status_code: int) -> None:
        error = sys.exception()
        detail = str(error) if isinstance(error, h11.RemoteProtocolError) and str(error) else "unreadable"
        if status_code == 431:
            message = f"request headers too large (the limit is {self.config.h11_max_incomplete_size} bytes)"
        else:
            message = f"{_MESSAGES.get(status_code, 'malformed HTTP request')}: {detail}"
        body = error_body(status_code, message, self._path())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *self.config.response_headers("h11")]
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers,
                                                reason=HTTPStatus(status_code).phrase.encode()))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    def _path(self) -> str | None:
        """The path of the request that broke: its stream's when its head was read, else the start
        of the bytes read before it (a head h11 could not parse or refused)."""
        scope = getattr(self.stream, "scope", None)
        if isinstance(scope, dict) and isinstance(scope.get("path"), str):
            return scope["path"]
        return _path_of(self._between[:_HEAD_KEEP])
