"""Access log: one JSON line per request on the ``archc.access`` logger, secrets redacted.

Stage: runtime, outer middleware (pure ASGI). Imports runtime.guard.auth (types), runtime.http.responses (the
stream-failure state key) and the standard library.
The line carries what an operator asks first ("which model served this, why, how long"): the
``x-arch-*`` decision headers, the attempts, the gateway key's *name*, never a key or a body.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

from runtime.http.asgi import ASGIApp, Message, Receive, Scope, Send, request_state

LOGGER = "archc.access"
REDACTED = "[redacted]"
# Query parameters that may carry a credential (Azure's api-key, Google's key, ad-hoc tokens).
_SECRET_PARAMS = re.compile(r"(key|token|secret|password|auth|signature|sig)$", re.IGNORECASE)
# Credential-looking strings anywhere in a logged value: provider keys and bearer tokens.
_SECRET_TEXT = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+|AIza[0-9A-Za-z_\-]{20,})")
# Response headers copied into the line (name in the line: header without the ``x-arch-`` prefix).
_DECISION_HEADERS = ("x-arch-route", "x-arch-why", "x-arch-target", "x-arch-fallback", "x-arch-attempts", "x-arch-router-ms",
                     "x-arch-bundle", "x-ratelimit-remaining")


# Raw response header name -> field in the line (ASGI header names are lowercase bytes; others are lowered).
_FIELDS = {name.encode(): name.removeprefix("x-arch-").replace("-", "_") for name in _DECISION_HEADERS}
_WANTED = frozenset({b"content-length", b"user-agent"})
_ATTEMPT_OK = re.compile(r"=ok$")  # the last attempt's outcome in x-arch-attempts


def redact_text(text: str) -> str:
    # Cheap test first: almost no logged value has credential-looking text at all.
    if "sk-" not in text and "Bearer" not in text and "AIza" not in text:
        return text
    return _SECRET_TEXT.sub(REDACTED, text)


def redact_query(query: str) -> str:
    """The query string with credential-like parameter values replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return redact_text(urlencode([(k, REDACTED if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="[]"))


class AccessLogMiddleware:
    """Logs one line when each HTTP response ends (or the client leaves); adds ``x-request-id``."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.log = logger or logging.getLogger(LOGGER)
        self.clock = clock
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # what json.dumps builds per call
        self._stamp: tuple[int, str] = (-1, "")  # the last second formatted for "ts"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        client_id = None
        for name, value in scope.get("headers") or ():  # ASGI header names are lowercase bytes; the last one counts
            if name == b"x-request-id":
                client_id = value.decode("latin-1")
        request_id = _clean_id(client_id) or os.urandom(16).hex()  # uuid4().hex's shape, cheaper
        status: int | None = None
        sent = 0
        response_headers: list[tuple[bytes, bytes]] = []  # decoded only when a line is written (the log may be off)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent, response_headers
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
                response_headers = list(message.get("headers") or ())
                for name, _ in response_headers:
                    if len(name) == 12 and name.lower() == b"x-request-id":
                        break
                else:
                    message = {**message, "headers": [*response_headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            if self.log.isEnabledFor(logging.INFO):
                self._emit(scope, request_id, status, sent, response_headers, self.clock() - started, error)

    def _emit(self, scope: Scope, request_id: str, status: int | None, sent: int, response_headers: list[tuple[bytes, bytes]],
              seconds: float, error: str | None) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or () if k in _WANTED}
        state = request_state(scope)
        client = scope.get("client")
        line: dict[str, Any] = {
            "ts": self._timestamp(),
            "request_id": request_id,
            "method": scope.get("method"),
            "path": redact_text(scope.get("path", "")),
            "query": redact_query((scope.get("query_string") or b"").decode("latin-1")),
            "status": status if status is not None else 499,
            "ms": round(seconds * 1000, 2),
            "bytes_in": int(headers["content-length"]) if headers.get("content-length", "").isdigit() else None,
            "bytes_out": sent,
            "client": client[0] if client else None,
            "user_agent": redact_text(headers.get("user-agent", ""))[:200] or None,
            "gateway_key": state.key_name,
        }
        decision: dict[str, bytes] = {}
        for name, value in response_headers:
            field = _FIELDS.get(name)
            if field is None and not name.islower():
                field = _FIELDS.get(name.lower())
            if field is not None:
                decision[field] = value  # the last one counts
        for field in _FIELDS.values():  # the gateway's own headers: names and numbers
            if field in decision:
                line[field] = decision[field].decode("latin-1")
        broken = state.stream_failure
        if broken:  # a 200 stream that ended with an error event: not a success
            line["outcome"] = "stream_error"
            line["stream_error"] = broken
            if "attempts" in line:  # the header went out saying "=ok" before the stream broke
                line["attempts"] = _ATTEMPT_OK.sub(f"={broken}", line["attempts"])
        else:
            line["outcome"] = "ok" if status is not None and status < 400 else "error"
        if error:
            line["error"] = error
        self.log.info(self._encoder.encode(line))

    def _timestamp(self) -> str:
        second = int(time.time())
        if second != self._stamp[0]:
            self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z")
        return self._stamp[1]


def _clean_id(value: str | None) -> str | None:
    """A client's request id, kept only when short and plain (it is echoed into logs and headers)."""
    if value and len(value) <= 128 and re.fullmatch(r"[A-Za-z0-9._:\-]+", value):
        return value
    return None
