"""Rate-limit ASGI middleware: buffers LLM request bodies, asks the limiter, answers 429 or forwards.

Stage: runtime, after gateway keys, before the endpoints. Imports runtime.http.asgi, runtime.errors,
runtime.guard.ratelimit's limiter and rules, and the standard library; no starlette.
"""

from __future__ import annotations

import json
from typing import Callable

from runtime.http.asgi import ASGIApp, Message, Receive, Scope, Send, format_for_path, request_state, send_error
from runtime.errors import PayloadTooLarge, ProviderUnavailable, RateLimited
from runtime.guard.ratelimit.limiter import RateLimiter
from runtime.guard.ratelimit.rules import RequestInfo
from runtime.settings import DEFAULT_MAX_BODY_BYTES
from runtime.wire.tokens import prompt_tokens

LIMITED_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1/responses")


class RateLimitMiddleware:
    """Buffers LLM request bodies (up to ``max_body_bytes``), asks the limiter, answers 429 in the
    client's format or forwards with ``x-ratelimit-*`` headers added.

    ``get_limiter(scope)`` returns the current limiter (it changes on hot reload) or None (off).
    """

    def __init__(
        self,
        app: ASGIApp,
        get_limiter: Callable[[Scope], RateLimiter | None],
        *,
        max_body_bytes: int | Callable[[Scope], int] = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.get_limiter = get_limiter
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path", "").rstrip("/") not in LIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limiter = self.get_limiter(scope)
        if limiter is None:
            await self.app(scope, receive, send)
            return
        client_format = format_for_path(scope["path"])
        cap = self.max_body_bytes(scope) if callable(self.max_body_bytes) else self.max_body_bytes
        body = await _read_body(receive, cap)
        if body is None:
            await send_error(send, PayloadTooLarge(f"request body exceeds {cap} bytes"), client_format)
            return
        info = _request_info(scope, body, limiter.needs_tokens)
        verdict = await limiter.check(info)
        if not verdict.allowed:
            if verdict.backend_down:
                error = ProviderUnavailable("rate-limit backend unavailable; try again shortly", headers={"retry-after": "1"})
            else:
                rule = verdict.rule
                what = f"{rule.limit} {rule.kind} per {int(rule.window_s)}s" if rule else "limit"
                error = RateLimited(f"rate limit exceeded ({what})", headers=verdict.headers(), code="rate_limit_exceeded")
            await send_error(send, error, client_format)
            return
        extra = [(k.encode(), v.encode()) for k, v in verdict.headers().items()]
        await self.app(scope, _replay(body, receive), _with_headers(send, extra))


async def _read_body(receive: Receive, cap: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _request_info(scope: Scope, body: bytes, needs_tokens: bool) -> RequestInfo:
    headers: dict[str, str] = {}
    for k, v in scope.get("headers") or ():
        headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):
        parsed = None
    model = parsed.get("model") if isinstance(parsed, dict) and isinstance(parsed.get("model"), str) else None
    tokens = prompt_tokens(parsed) if needs_tokens else 1
    return RequestInfo(model, headers, request_state(scope).key_name, tokens)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    if not extra:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = list(message.get("headers") or ()) + extra
        await send(message)

    return wrapped
