"""An HTTP proxy on 127.0.0.1 for the egress tests: CONNECT tunnels and absolute-form requests.

Test support. ``routes`` maps the authority a client asks for (``127.0.0.1:9``, a closed port) to
where the proxy really connects, so a request can only succeed through the proxy. It records every
request it saw (method, target, the Proxy-Authorization it got) and can demand credentials (407)
or refuse every tunnel (403).

    with ConnectProxy({"127.0.0.1:9": ("127.0.0.1", upstream.port)}) as proxy:
        env = {"HTTPS_PROXY": proxy.url}
"""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import dataclass
from typing import Any


@dataclass
class Seen:
    method: str
    target: str
    authorization: str | None


class ConnectProxy:
    def __init__(self, routes: dict[str, tuple[str, int]], *, credentials: str | None = None, refuse: bool = False) -> None:
        self.routes = routes
        self.credentials = credentials  # "user:password" demanded, else none
        self.refuse = refuse
        self.seen: list[Seen] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConnectProxy":
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="connect-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "ConnectProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        auth = headers.get("proxy-authorization")
        self.seen.append(Seen(method, target, auth))
        if self.refuse:
            await self._answer(writer, b"403 Forbidden")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if auth != expected:
                await self._answer(writer, b"407 Proxy Authentication Required", b"proxy-authenticate: Basic realm=\"test\"\r\n")
                return
        if method == "CONNECT":
            where = self.routes.get(target)
        else:  # absolute-form: http://authority/path
            authority = target.split("://", 1)[-1].split("/", 1)[0]
            where = self.routes.get(authority)
        if where is None:
            await self._answer(writer, b"502 Bad Gateway")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*where)
        except OSError:
            await self._answer(writer, b"502 Bad Gateway")
            return
        self._writers.add(up_writer)
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            up_writer.write(head)  # the origin server takes absolute-form (RFC 9112 section 3.2.2)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
        finally:
            self._writers.discard(up_writer)
            up_writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, status: bytes, extra: bytes = b"") -> None:
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n" + extra + b"\r\n")
        try:
            await writer.drain()
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
