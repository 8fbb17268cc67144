"""Server-sent-event answers without a task group per request: a StreamingResponse that watches for
the client leaving with one plain asyncio task.

Stage: endpoints' helper (pure ASGI on top of starlette.responses). Imports starlette and asyncio only.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class SSEResponse(StreamingResponse):
    """Same bytes and headers as ``StreamingResponse``; on ``http.disconnect`` the body iterator is
    cancelled (its ``finally`` closes the upstream), as Starlette's anyio task group would, at a
    fraction of the cost (hypercorn speaks ASGI 2.1, where ``send`` does not raise on disconnect)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = {"streaming": True, "left": False}

        async def watch() -> None:
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # a receive that fails means the client is gone as well
                pass
            if state["streaming"]:
                state["left"] = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not state["left"] or task.uncancel() > 0:  # someone else cancelled us too: let it through
                raise
        except OSError as exc:  # ASGI 2.4 servers raise on send after a disconnect (as StreamingResponse maps it)
            raise ClientDisconnect() from exc
        finally:
            state["streaming"] = False
            watcher.cancel()
        if self.background is not None:
            await self.background()
