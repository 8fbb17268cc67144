"""Event streams sent straight over ASGI, watching for the
client leaving with one plain asyncio task (no Starlette Response, no anyio task group per request).

Stage: endpoints' helper (pure ASGI). Imports starlette (ClientDisconnect, StreamingResponse), runtime.http.asgi
and asyncio. (A whole JSON answer, errors included, is runtime.http.asgi's JSONAnswer.)
Headers are raw ``(bytes, bytes)`` pairs, in the order they go out.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterable, Awaitable

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from runtime.http.asgi import Headers, Receive, Scope, Send, request_state

SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
NO_CACHE = (b"cache-control", b"no-cache")


class SSEAnswer:
    """A 200 event stream: ``headers``, ``cache-control: no-cache``, the content type, then each chunk of ``chunks``.
    ``failure`` is filled by the producer of ``chunks`` when the stream ends with an error event."""

    __slots__ = ("headers", "chunks", "failure")

    def __init__(self, headers: Headers, chunks: AsyncIterable[bytes], failure: list[str] | None = None) -> None:
        self.headers = [*headers, NO_CACHE, SSE_TYPE]
        self.chunks = chunks
        self.failure = failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await until_disconnect(self._stream(send), receive)
        finally:
            if self.failure:  # the access log reports it (runtime/observe/accesslog.py)
                request_state(scope).stream_failure = self.failure[0]

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def until_disconnect(streaming: Awaitable[Any], receive: Receive) -> None:
    """Await ``streaming`` (the coroutine that sends an answer); on ``http.disconnect`` cancel it, so
    its body iterator's ``finally`` closes the upstream, as Starlette's anyio task group would, at a
    fraction of the cost (hypercorn speaks ASGI 2.1, where ``send`` does not raise on disconnect).

    The watcher task starts when the event loop next runs: an answer sent without ever waiting needs
    none (no disconnect can be received before the loop runs again), and most of its cost is saved.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    state = {"streaming": True, "left": False}
    watcher: asyncio.Task | None = None

    async def watch() -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # a receive that fails means the client is gone as well
            pass
        if state["streaming"]:
            state["left"] = True
            task.cancel()

    def start() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    pending = loop.call_soon(start)
    try:
        await streaming
    except asyncio.CancelledError:
        if not state["left"] or task.uncancel() > 0:  # someone else cancelled us too: let it through
            raise
    except OSError as exc:  # ASGI 2.4 servers raise on send after a disconnect (as StreamingResponse maps it)
        raise ClientDisconnect() from exc
    finally:
        state["streaming"] = False
        pending.cancel()
        if watcher is not None:
            watcher.cancel()


class SSEResponse(StreamingResponse):
    """For handlers that return a Starlette response: the same bytes and headers as
    ``StreamingResponse``; on ``http.disconnect`` the body iterator is cancelled (``until_disconnect``),
    without a task group. (The hot endpoints send ``SSEAnswer``.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await until_disconnect(self.stream_response(send), receive)
        if self.background is not None:
            await self.background()

