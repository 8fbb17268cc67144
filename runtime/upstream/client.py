"""The only HTTP-client user: POST to a provider, map transport failures to the UpstreamError tree.

Stage: upstream. Imports runtime.upstream.http1 (our lean HTTP/1.1 client), runtime.errors, runtime.wire.json_text and
runtime.upstream.targets; no HTTP client library. One send path: every request goes to a ``Connections``
pool (runtime/upstream/http1.py's ``Pool`` in the gateway; bench/transports.py puts httpx's and aiohttp's
clients behind the same interface, for comparison), and every transport failure is mapped to the
error tree in one place (``_failure``). Streams are yielded as the bytes arrive; closing one early
drops its connection, so the upstream sees the client leave. Tracing adds ``traceparent`` through
``Upstream.header_hooks``.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Optional, Protocol

from runtime.upstream import http1
from runtime.errors import BadUpstreamResponse, GatewayError, UpstreamError, UpstreamStatus, UpstreamTimeout
from runtime.upstream.targets import Target
from runtime.wire import json_text
from runtime.settings import Settings

_ERROR_BODY_LIMIT = 64 * 1024
_KEEPALIVE_S = 30.0
# Every provider request carries these, then the provider's own (wire format, key).
_BASE_HEADERS = (("accept", "application/json, text/event-stream"), ("accept-encoding", "identity"), ("user-agent", "archc"))


class Answer(Protocol):
    """An upstream response as the pool hands it over (runtime.upstream.http1.Response): status and raw
    headers, then the body; its errors are ``http1.HTTPError``s."""

    status: int
    headers: list[tuple[bytes, bytes]]

    def header(self, name: str) -> Optional[str]: ...
    def limit(self, seconds: float) -> None: ...
    async def next_chunk(self) -> Optional[bytes]: ...
    async def read(self, limit: Optional[int] = None) -> bytes: ...
    async def aclose(self) -> None: ...


class Connections(Protocol):
    """Where requests go (runtime.upstream.http1.Pool): ``post`` sends one and answers once the head is in."""

    async def post(self, endpoint: http1.Endpoint, headers: bytes, body: bytes) -> Answer: ...
    async def aclose(self) -> None: ...


def build_pool(settings: Settings) -> http1.Pool:
    """The shared upstream pool (created in the lifespan, closed with it). No pool-wide TLS context:
    each provider's Endpoint carries its own (runtime/upstream/egress.py's trust)."""
    return http1.Pool(max_connections=settings.max_connections, keepalive_s=_KEEPALIVE_S,
                      connect_timeout_s=settings.connect_timeout_s, read_timeout_s=settings.read_timeout_s)


# What each phase of a request calls a transport failure: (timed out, anything else).
_PHASES = {
    "send": ("did not answer in time", "could not be reached"),
    "body": ("stopped answering mid-response", "broke off its response"),
    "stream": ("stopped streaming (timeout)", "broke off its stream"),
}


def _failure(target: Target, exc: http1.HTTPError, phase: str) -> UpstreamError:
    """The one mapping of a transport failure to the error tree: a timeout answers 504
    (UpstreamTimeout), anything else (refused, reset, not HTTP) 502. Before the answer started,
    the cause's text is kept (scrubbed of the provider's key); after, only its class."""
    timed_out, failed = _PHASES[phase]
    kind = type(exc).__name__
    if isinstance(exc, (http1.ConnectTimeout, http1.ReadTimeout)):
        detail = f" ({kind}: {target.scrub(str(exc))})" if phase == "send" else ""
        return UpstreamTimeout(f"upstream {target.name!r} {timed_out}{detail}")
    detail = f": {target.scrub(str(exc)) or 'no detail'}" if phase == "send" else ""
    return UpstreamError(f"upstream {target.name!r} {failed}: {kind}{detail}")


class Upstream:
    """Sends provider requests to a pool. Each provider's endpoint (URL, proxy, TLS trust) and
    header block are prepared once, by name; a reload builds a new sender. The pool is owned (and
    closed) by whoever built it."""

    def __init__(self, pool: Connections) -> None:
        self.pool = pool
        # (provider name, URL): a provider that speaks two APIs (chat and Responses) has two endpoints.
        self._prepared: dict[tuple[str, str], tuple[http1.Endpoint, bytes]] = {}
        # Headers added to every request at send time (tracing's ``traceparent``).
        self.header_hooks: list[Callable[[], Mapping[str, str]]] = []

    def _request(self, target: Target, extra_headers: Mapping[str, str] | None) -> tuple[http1.Endpoint, bytes]:
        key = (target.name, target.url)
        prepared = self._prepared.get(key)
        if prepared is None:
            try:
                endpoint = http1.Endpoint(target.url, proxy=target.route.proxy, ssl_context=target.route.ssl_context)
                prepared = self._prepared[key] = (endpoint, http1.header_block([*_BASE_HEADERS, *target.headers]))
            except ValueError as exc:
                raise UpstreamError(f"upstream {target.name!r} cannot be called: {target.scrub(str(exc))}") from exc
        if self.header_hooks:
            extra_headers = dict(extra_headers or {})
            for hook in self.header_hooks:
                extra_headers.update(hook())
        if not extra_headers:
            return prepared
        try:
            return prepared[0], prepared[1] + http1.header_block(list(extra_headers.items()))
        except ValueError as exc:  # a header value that would split the request head
            raise UpstreamError(f"upstream {target.name!r} cannot be called: {exc}") from exc

    async def _send(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None) -> Answer:
        endpoint, headers = self._request(target, extra_headers)
        try:
            response = await self.pool.post(endpoint, headers, body)
        except http1.HTTPError as exc:
            raise _failure(target, exc, "send") from exc
        if response.status >= 400:
            raw = await _read_capped(response)
            raise UpstreamStatus(response.status, target.scrub(_error_message(target, response.status, raw)),
                                 headers=kept_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers))
        return response

    async def post(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> tuple[Any, bytes]:
        """POST ``body``; the parsed JSON answer and its bytes (error statuses raise UpstreamStatus)."""
        response = await self._send(target, body, extra_headers)
        try:
            raw = await response.read()
        except http1.HTTPError as exc:
            raise _failure(target, exc, "body") from exc
        return _json_answer(target, raw, response.header("content-type") or "")

    async def post_json(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> Any:
        """POST ``body`` and return the parsed JSON answer."""
        return (await self.post(target, body, extra_headers))[0]

    async def open_stream(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> "UpstreamStream":
        """POST ``body`` for a streamed answer; error statuses raise before any byte reaches the client."""
        response = await self._send(target, body, extra_headers)
        content_type = response.header("content-type") or ""
        if not _is_event_stream(content_type):
            raise _not_a_stream(target, content_type, await _read_capped(response))
        return UpstreamStream(target, response, content_type)


# An upstream's error answer keeps these for the client: when to retry, and the provider's own quota figures
# (OpenAI ``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``); the SDKs pace their retries by them.
_KEPT_HEADERS = ("retry-after", "retry-after-ms")
_KEPT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The rate-limit headers of an upstream error answer, passed on to the client (names lower-cased)."""
    out: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in _KEPT_HEADERS or lower.startswith(_KEPT_PREFIXES):
            out[lower] = value
    return out


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_event_stream(content_type: str) -> bool:
    return _media_type(content_type) == "text/event-stream"


async def _read_capped(response: Answer) -> bytes:
    """At most 64 KiB of an answer that will not be passed on (an error, a non-stream); the
    connection is closed or reused either way, and a body that breaks off reads as what came."""
    try:
        return (await response.read(_ERROR_BODY_LIMIT))[:_ERROR_BODY_LIMIT]
    except http1.HTTPError:
        return b""


def _not_a_stream(target: Target, content_type: str, raw: bytes) -> BadUpstreamResponse:
    """The error for a 200 to a streamed request that is not an event stream (JSON, HTML, nothing)."""
    kind = _media_type(content_type) or "no content type"
    detail = _error_detail(raw)
    return BadUpstreamResponse(target.scrub(f"upstream {target.name!r} answered a streamed request with {kind}, "
                                            f"not an event stream" + (f": {detail}" if detail else "")))


def _json_answer(target: Target, raw: bytes, content_type: str) -> tuple[Any, bytes]:
    """The parsed answer; a body that is not JSON at all (an HTML page, an event stream) is a bad response."""
    try:
        return json_text.parse_answer(raw), raw
    except ValueError as exc:
        kind = _media_type(content_type) or "no content type"
        what = "an empty body" if not raw.strip() else f"{kind} that is not JSON"
        raise BadUpstreamResponse(f"upstream {target.name!r} answered 200 with {what}") from exc


def _error_detail(raw: bytes) -> str:
    """What an error body says: its ``error.message`` (or ``error`` string), else its first 300 characters."""
    try:
        body = json.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return str(err.get("message") or "")
        return err if isinstance(err, str) else ""
    except ValueError:
        return raw[:300].decode("utf-8", "replace").strip()


def _error_message(target: Target, status: int, raw: bytes) -> str:
    detail = _error_detail(raw)
    return f"upstream {target.name!r} answered {status}" + (f": {detail}" if detail else "")


class UpstreamStream:
    """An open streamed response: ``async for chunk in stream`` yields raw bytes as they arrive;
    ``aclose()`` on an unfinished one drops the connection, so the upstream sees the client leave."""

    def __init__(self, target: Target, response: Answer, content_type: str) -> None:
        self.target = target
        self.content_type = content_type
        self._response = response
        self._late: Callable[[], GatewayError] | None = None
        self._head: list[bytes] = []  # read by ``judge``, yielded first

    async def judge(self, first: Any) -> None:
        """Read until ``first`` (adapt.FirstEvent) has judged the first event; the bytes read are
        kept and yielded first. On a bad start the connection is closed and the error raised, so
        the attempt fails before any byte reaches the client (retried, or the fallback serves it)."""
        try:
            while True:
                try:
                    chunk = await self._response.next_chunk()
                except http1.HTTPError as exc:
                    raise _failure(self.target, exc, "stream") from exc
                if chunk is None:
                    first.end()
                    return
                self._head.append(chunk)
                if first.feed(chunk):
                    return
        except BaseException:
            await self.aclose()
            raise

    def bound(self, seconds: float, late: Callable[[], GatewayError]) -> "UpstreamStream":
        """This stream, its rest bounded to ``seconds`` from now (``late()`` is raised past it): the
        response's own deadline, checked per chunk (no timer of its own)."""
        self._response.limit(seconds)
        self._late = late
        return self

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # ``judge`` read the start through the same ``next_chunk``: this goes on from there.
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        next_chunk = self._response.next_chunk
        try:
            while (chunk := await next_chunk()) is not None:
                yield chunk
        except http1.DeadlineExceeded:
            if self._late is None:
                raise UpstreamTimeout(f"upstream {self.target.name!r} stopped streaming (deadline)") from None
            raise self._late() from None
        except http1.HTTPError as exc:
            raise _failure(self.target, exc, "stream") from exc

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        except (http1.HTTPError, OSError):
            pass


__all__ = ["Answer", "Connections", "Upstream", "UpstreamStream", "build_pool", "kept_headers"]
