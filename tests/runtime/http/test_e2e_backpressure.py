"""Streaming backpressure end to end: a client that stops reading stops the upstream too.

`archc serve` runs as a process; the upstream is a raw HTTP/1.1 server on 127.0.0.1 that streams an
endless SSE body as fast as the socket takes it and counts what it managed to send. Without
backpressure the gateway would read the upstream dry into memory while the client sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

CHUNK = b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 16000}}]}).encode() + b"\n\n"
LIMIT = 512 * 1024 * 1024  # what the upstream would send if nothing pushed back


class EndlessUpstream:
    """Answers one streamed chat request with chunks until LIMIT or until the reader goes away."""

    def __init__(self) -> None:
        self.sent = 0
        self.finished = threading.Event()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        for task in asyncio.all_tasks(self.loop):  # a handler still blocked in drain()
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(self.loop), return_exceptions=True))

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            frame = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
            while self.sent < LIMIT:
                writer.write(frame)
                await writer.drain()  # blocks while the gateway does not read
                self.sent += len(CHUNK)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.finished.set()
            writer.close()

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            await self.server.wait_closed()
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self.loop)
        self.thread.join(5)
        self.loop.close()


def test_a_client_that_stops_reading_stops_the_upstream_and_leaving_ends_it(tmp_path: Path) -> None:
    upstream = EndlessUpstream()
    config = tmp_path / "config.yaml"
    config.write_text("version: v0.3.0\nlisteners:\n  - type: model\n    name: llm\n    port: 12000\nmodel_providers:\n"
                      f"  - model: openai/gpt-4o\n    base_url: http://127.0.0.1:{upstream.port}\n    default: true\n")
    try:
        with Gateway(config, args=["--log-level", "warning"]) as gw:
            body = json.dumps({"model": "openai/gpt-4o", "stream": True, "messages": [{"role": "user", "content": "go"}]}).encode()
            client = socket.create_connection(("127.0.0.1", gw.port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                           b"content-length: %d\r\n\r\n" % len(body) + body)
            first = client.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]

            # The client sleeps. The upstream must come to a stop: its count stops growing.
            time.sleep(2.0)
            stalled_at = upstream.sent
            time.sleep(1.0)
            assert upstream.sent == stalled_at, "the upstream kept sending while the client read nothing"
            assert stalled_at < 64 * 1024 * 1024, f"{stalled_at} bytes buffered between upstream and a sleeping client"

            # Reading again lets it move on.
            for _ in range(200):
                client.recv(65536)
            assert upstream.sent > stalled_at

            # The client leaves: the gateway drops the upstream connection.
            client.close()
            assert upstream.finished.wait(10), "the upstream never saw the client leave"
            assert upstream.sent < LIMIT
    finally:
        upstream.close()
