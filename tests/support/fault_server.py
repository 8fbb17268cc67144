"""A raw HTTP/1.1 upstream on 127.0.0.1 that speaks OpenAI chat until its path tells it to misbehave.

Test support: ``/<fault>/v1/chat/completions`` answers ``ok``, ``500``, ``429``, ``reset``, ``hang``
(never answers), ``badjson``, ``cut`` (one event, then a reset), ``stall`` (headers and part of the
answer, then silence), ``slow<ms>`` (a whole answer after <ms>) or ``trickle`` (a byte or an event at
a time, for ever). Every answer says ``Connection: close`` so no socket is pooled.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from typing import Any


def _completion(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def _chunk(model: str, text: str) -> bytes:
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class FaultServer:
    """The server, on its own event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def url(self, fault: str) -> str:
        return f"http://127.0.0.1:{self.port}/{fault}/v1/chat/completions"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length"), 0)
            body = json.loads(await reader.readexactly(length)) if length else {}
            await self._answer(path.split("/")[1], body, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, fault: str, body: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        model = body.get("model", "m")
        stream = bool(body.get("stream"))

        async def send(status: str, ctype: str, payload: bytes, *, length: bool = True) -> None:
            # Streams use chunked encoding, as providers do: a connection lost before the last
            # (empty) chunk is a broken stream, not the end of the body.
            head = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\nconnection: close\r\n"
            head += f"content-length: {len(payload)}\r\n" if length else "transfer-encoding: chunked\r\n"
            writer.write(head.encode() + b"\r\n" + (payload if length else _chunked(payload)))
            await writer.drain()

        def reset() -> None:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        if fault == "ok":
            if stream:
                await send("200 OK", "text/event-stream", _chunk(model, "fi") + _chunk(model, "ne") + b"data: [DONE]\n\n", length=False)
                writer.write(b"0\r\n\r\n")
            else:
                await send("200 OK", "application/json", json.dumps(_completion(model)).encode())
        elif fault in ("500", "429"):
            err = json.dumps({"error": {"message": f"fault {fault}", "type": "server_error"}}).encode()
            await send("500 Internal Server Error" if fault == "500" else "429 Too Many Requests", "application/json", err)
        elif fault == "reset":
            reset()
        elif fault == "hang":  # never answer: wait for the gateway to give up
            await reader.read()
        elif fault == "badjson":
            await send("200 OK", "application/json", b'{"id": "x", "choices": [{"mess')
        elif fault == "cut":  # headers and one event, then the connection drops
            await send("200 OK", "text/event-stream", _chunk(model, "par"), length=False)
            await asyncio.sleep(0.05)
            reset()
        elif fault == "stall":  # headers and part of the body (or one event), then silence
            if stream:
                await send("200 OK", "text/event-stream", _chunk(model, "sta"), length=False)
            else:
                payload = json.dumps(_completion(model)).encode()
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
                             f"connection: close\r\n\r\n".encode() + payload[:20])
                await writer.drain()
            await reader.read()
        elif fault.startswith("slow"):  # slow<ms>: a whole answer after <ms>
            await asyncio.sleep(int(fault[4:]) / 1000)
            await self._answer("ok", body, reader, writer)
        elif fault == "trickle":
            if stream:
                await send("200 OK", "text/event-stream", b"", length=False)
                while True:
                    writer.write(_chunked(_chunk(model, ".")))
                    await writer.drain()
                    await asyncio.sleep(0.3)
            payload = json.dumps(_completion(model)).encode()
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode())
            for i in range(len(payload)):
                writer.write(payload[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.2)


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""
