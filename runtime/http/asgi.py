"""The ASGI edge in one place: the types every layer speaks, the state a request carries, the
endpoint table (path -> client format), the whole JSON answer (JSONAnswer) and the one way an error
answer is written (error_answer; send_error where only ``send`` is at hand).

Stage: edge (under the middleware, the endpoints and the connection shim). Imports runtime.errors,
runtime.wire and the standard library; no framework.

State: the app's lifespan yields ``{APP: AppState}``, which the server copies into each request's
``scope["state"]``. The outermost middleware (runtime.live.generation.LiveStateMiddleware) pins the
request to the current bundle generation in one ``RequestState`` at ``scope[REQUEST]``; every later
layer reads and sets typed attributes on it, and nothing else travels in the scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, MutableMapping

from runtime.errors import GatewayError, render
from runtime.wire import WireFormat
from runtime.wire.json_text import dumps

if TYPE_CHECKING:  # annotations only: the edge imports no stage above it
    from runtime.live.generation import Generation, Live
    from runtime.state import GatewayState
    from runtime.observe.tracing import Tracing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

APP = "archc"  # the lifespan state's one entry (and so ``scope["state"]``'s): AppState
REQUEST = "archc.request"  # the scope's entry: RequestState


@dataclass(frozen=True, slots=True)
class AppState:
    """What the lifespan built, for every request: the first generation's gateway state, the live
    generations (None in an app built without them) and tracing (None when off)."""

    gateway: "GatewayState"
    live: "Live | None" = None
    tracing: "Tracing | None" = None


class RequestState:
    """One request's state. Set when it arrives: ``gateway`` and ``generation`` (the bundle generation
    it is pinned to, None without live generations), ``tracing``. Set on the way: ``key_name`` (the
    gateway key that matched, by name), ``stream_failure`` (how a 200 stream ended when it ended with
    an error event: an outcome of runtime/upstream/retry.py, read by the access log)."""

    __slots__ = ("gateway", "generation", "tracing", "key_name", "stream_failure")

    def __init__(self, gateway: "GatewayState | None", generation: "Generation | None" = None,
                 tracing: "Tracing | None" = None) -> None:
        self.gateway = gateway
        self.generation = generation
        self.tracing = tracing
        self.key_name: str | None = None
        self.stream_failure: str | None = None


def app_state(scope: Scope) -> AppState | None:
    state = scope.get("state")
    return state.get(APP) if state else None


def request_state(scope: Scope) -> RequestState:
    """The request's state, made from the app's when no middleware pinned it (an app without live
    generations, a test's bare scope)."""
    found = scope.get(REQUEST)
    if found is None:
        app = app_state(scope)
        found = scope[REQUEST] = RequestState(app.gateway if app else None, None, app.tracing if app else None)
    return found


# -- endpoints: which client format each path speaks ----------------------------------------------

ANTHROPIC = WireFormat.ANTHROPIC_MESSAGES
OPENAI = WireFormat.OPENAI_CHAT
ENDPOINTS: Mapping[str, WireFormat] = {
    "/v1/chat/completions": OPENAI,
    "/v1/messages": ANTHROPIC,
    "/v1/responses": WireFormat.OPENAI_RESPONSES,
    "/v1/messages/count_tokens": ANTHROPIC,
    "/v1/route": OPENAI,  # ``?format=anthropic`` chooses per request (runtime/http/endpoints.py)
    "/v1/models": OPENAI,
}


def format_for_path(path: str | None) -> WireFormat:
    """The client format of a path, for errors raised before an endpoint runs (the HTTP layer,
    unknown paths, gateway keys, rate limits): the table's, else Anthropic's for ``…/messages`` and
    below it (also a doubled ``/v1/v1/messages`` from a base_url that already ended in /v1), else OpenAI's."""
    if not path:
        return OPENAI
    known = ENDPOINTS.get(path)
    if known is not None:
        return known
    if path.rstrip("/").endswith("/messages") or "/messages/" in path:
        return ANTHROPIC
    return OPENAI


# -- errors: one writer ---------------------------------------------------------------------------

def error_body(error: GatewayError, client_format: WireFormat) -> bytes:
    """The error's JSON body in the client's format, compact UTF-8."""
    return dumps(render(error, client_format))


def error_headers(error: GatewayError, headers: Headers = ()) -> Headers:  # type: ignore[assignment]
    """``headers`` then the error's own (``retry-after``, ``www-authenticate``, ``allow``...), which win."""
    if not error.headers:
        return list(headers)
    own = {k.lower().encode("latin-1"): str(v).encode("latin-1") for k, v in error.headers.items()}
    out = [(k, own.pop(k, v)) for k, v in headers]  # one the error overrides keeps its place, as in a dict merge
    return out + list(own.items())


JSON_TYPE = (b"content-type", b"application/json")


class JSONAnswer:
    """A complete answer; ``content-length`` and ``content-type`` follow ``headers`` (as Starlette's Response adds them)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.body = body
        if status < 200 or status in (204, 304):
            self.headers = [*headers, JSON_TYPE]
        else:
            self.headers = [*headers, (b"content-length", b"%d" % len(body)), JSON_TYPE]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send(send)

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})



def error_answer(error: GatewayError, client_format: WireFormat, headers: Headers = ()) -> JSONAnswer:  # type: ignore[assignment]
    """``error`` as an answer in the client's format: ``headers``, then the error's own (which win)."""
    return JSONAnswer(error.status, error_headers(error, headers), error_body(error, client_format))


async def send_error(send: Send, error: GatewayError, client_format: WireFormat, headers: Headers = ()) -> None:  # type: ignore[assignment]
    """Answer ``error`` (the middleware's way: no scope or receive at hand)."""
    await error_answer(error, client_format, headers).send(send)
