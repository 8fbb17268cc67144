"""The two hot endpoints dispatched straight from ASGI, before Starlette's exception layer and router.

Stage: app (the innermost layer of the middleware ``runtime.app.layers`` composes, installed by runtime/app.py). Imports
runtime.http.chat. Every other path, and any other method, goes through the normal Starlette stack.
"""

from __future__ import annotations

from typing import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.http import chat

# The handlers catch every exception themselves (answering in the client's format), so Starlette's
# ExceptionMiddleware has nothing to do for them; its router would only find the same app.
HOT: Mapping[str, ASGIApp] = {
    "/v1/chat/completions": chat.chat_completions,
    "/v1/messages": chat.messages,
    "/v1/responses": chat.responses,
}


class HotPathMiddleware:
    """``POST /v1/chat/completions`` and ``POST /v1/messages`` go to their handlers directly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = HOT.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        await handler(scope, receive, send)
