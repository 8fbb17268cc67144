"""The only HTTP-client user: POST to a provider, map transport failures to the UpstreamError tree.

Stage: upstream. Imports httpx (its API), runtime.http1 (our lean HTTP/1.1 client), httpx-aiohttp
(a comparison transport), plus runtime.errors and runtime.providers.
Streams are yielded as the bytes arrive; closing the iterator closes the upstream connection.
By default requests go straight to runtime/http1.py's pool (the httpx Request/Response layer, and
aiohttp's client, each cost more per request than the rest of the gateway: bench/gateway.py);
any other transport (httpx's own, httpx-aiohttp, MockTransport in tests) is
driven through the httpx API. Tracing adds ``traceparent`` through ``Upstream.header_hooks``, on
either path.
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from runtime import http1
from runtime.errors import BadUpstreamResponse, GatewayError, UpstreamError, UpstreamStatus, UpstreamTimeout
from runtime.providers import Target
from runtime.retry import BoundedStream
from runtime.settings import Settings

_ERROR_BODY_LIMIT = 64 * 1024
_KEEPALIVE_S = 30.0
# Every provider request carries these, then the provider's own (wire format, key).
_BASE_HEADERS = (("accept", "application/json, text/event-stream"), ("accept-encoding", "identity"), ("user-agent", "archc"))


def build_client(settings: Settings) -> httpx.AsyncClient:
    """The shared upstream client (created in the lifespan, closed with it)."""
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections,
                          keepalive_expiry=_KEEPALIVE_S)
    transport: httpx.AsyncBaseTransport
    if settings.upstream_transport == "httpx":  # plain httpx, kept for comparison (bench/gateway.py)
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    elif settings.upstream_transport == "httpx-aiohttp":  # aiohttp through the httpx API, for comparison
        aio = AiohttpTransport(limits=limits, trust_env=False)
        # Our own session: no cookie jar (one user's upstream cookies must never reach the next user).
        aio.client = lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry,
                                           ssl=aio.ssl_context),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False)
        transport = aio
    else:
        # No pool-wide TLS context: each provider's Endpoint carries its own (runtime/egress.py's trust).
        transport = H1Transport(http1.Pool(max_connections=settings.max_connections, keepalive_s=_KEEPALIVE_S,
                                           connect_timeout_s=settings.connect_timeout_s, read_timeout_s=settings.read_timeout_s))
    timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


ENDPOINT_EXTENSION = "archc.endpoint"


def _endpoint(target: Target) -> http1.Endpoint:
    """The parsed URL with the provider's proxy and TLS trust (runtime/egress.py)."""
    return http1.Endpoint(target.url, proxy=target.route.proxy, ssl_context=target.route.ssl_context)


class H1Transport(httpx.AsyncBaseTransport):
    """runtime/http1.py's pool behind the httpx transport interface (tracing's wrapper and the
    httpx API use it this way; ``Upstream`` calls the pool directly)."""

    def __init__(self, pool: http1.Pool) -> None:
        self.pool = pool
        self._endpoints: dict[str, http1.Endpoint] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            raise httpx.UnsupportedProtocol(f"the upstream client only sends POST, not {request.method}", request=request)
        url = str(request.url)
        endpoint = request.extensions.get(ENDPOINT_EXTENSION) or self._endpoints.get(url)
        if endpoint is None:
            try:
                endpoint = self._endpoints[url] = http1.Endpoint(url)
            except ValueError as exc:
                raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
        headers = [(k, v) for k, v in request.headers.items() if k not in ("host", "content-length", "transfer-encoding")]
        try:
            body = await request.aread()
            response = await self.pool.post(endpoint, http1.header_block(headers), body)
        except http1.HTTPError as exc:
            raise _httpx_error(exc, request) from exc
        except ValueError as exc:  # a header value that would split the request head
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        return httpx.Response(response.status, headers=response.headers, stream=_H1Stream(response, request), request=request)

    async def aclose(self) -> None:
        await self.pool.aclose()


class _H1Stream(httpx.AsyncByteStream):
    def __init__(self, response: http1.Response, request: httpx.Request) -> None:
        self.response = response
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response:
                yield chunk
        except http1.HTTPError as exc:
            raise _httpx_error(exc, self.request) from exc

    async def aclose(self) -> None:
        await self.response.aclose()


def _httpx_error(exc: http1.HTTPError, request: httpx.Request) -> httpx.HTTPError:
    kind = {http1.ConnectTimeout: httpx.ConnectTimeout, http1.ReadTimeout: httpx.ReadTimeout,
            http1.ConnectError: httpx.ConnectError, http1.Disconnected: httpx.RemoteProtocolError}.get(type(exc), httpx.RemoteProtocolError)
    return kind(str(exc), request=request)


class Upstream:
    """Sends a provider request: straight to the lean HTTP/1.1 pool when the client's transport is
    it, else with the httpx API (``httpx.Request``/``Response``).

    The client's own layers are skipped on purpose: its cookie jar would keep one user's upstream
    cookies (e.g. a CDN's) and send them with the next user's request, and its per-request URL
    parsing, header merging, auth and redirect handling cost more than the rest of the gateway.
    URLs and headers are prepared once per provider. The client still owns (and closes) the transport.
    """

    def __init__(self, client: httpx.AsyncClient, *, connect_timeout_s: float = 10.0, read_timeout_s: float = 600.0,
                 native: bool = True) -> None:
        # httpx keeps the transport of a client built with ``transport=`` here (stable since 0.18).
        self.transport: httpx.AsyncBaseTransport = client._transport
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s).as_dict()
        self._prepared: dict[str, tuple[httpx.URL, httpx.Headers, http1.Endpoint | None]] = {}
        # The fast path, while ``transport`` is still the plain H1Transport (tracing replaces it with
        # a wrapper, which then goes through the httpx API). ``native=False`` forces the httpx API.
        self._native = self.transport if native and type(self.transport) is H1Transport else None
        self._native_prepared: dict[str, tuple[http1.Endpoint, bytes]] = {}
        # Headers added to every request at send time (tracing's ``traceparent``): on whichever path,
        # so observing the upstream never takes the sender off the lean pool.
        self.header_hooks: list[Callable[[], Mapping[str, str]]] = []

    def _hooked(self, extra_headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if not self.header_hooks:
            return extra_headers
        merged = dict(extra_headers or {})
        for hook in self.header_hooks:
            merged.update(hook())
        return merged

    def pool(self) -> http1.Pool | None:
        """The lean pool this sender posts to directly, or None when it goes through the httpx API."""
        native = self._native
        if native is None or self.transport is not native:
            return None
        return native.pool

    def _native_request(self, target: Target, extra_headers: Mapping[str, str] | None) -> tuple[http1.Endpoint, bytes]:
        prepared = self._native_prepared.get(target.name)
        if prepared is None:
            try:
                headers = http1.header_block([*_BASE_HEADERS, *target.headers])
                prepared = self._native_prepared[target.name] = (_endpoint(target), headers)
            except ValueError as exc:
                raise UpstreamError(f"upstream {target.name!r} cannot be called: {target.scrub(str(exc))}") from exc
        if not extra_headers:
            return prepared
        try:
            return prepared[0], prepared[1] + http1.header_block(list(extra_headers.items()))
        except ValueError as exc:
            raise UpstreamError(f"upstream {target.name!r} cannot be called: {exc}") from exc

    async def _send_native(self, pool: http1.Pool, target: Target, body: bytes,
                           extra_headers: Mapping[str, str] | None) -> http1.Response:
        endpoint, headers = self._native_request(target, extra_headers)
        try:
            response = await pool.post(endpoint, headers, body)
        except (http1.ConnectTimeout, http1.ReadTimeout) as exc:
            raise UpstreamTimeout(f"upstream {target.name!r} did not answer in time ({type(exc).__name__}: {exc})") from exc
        except http1.HTTPError as exc:  # refused, reset, not HTTP
            detail = target.scrub(str(exc)) or "no detail"
            raise UpstreamError(f"upstream {target.name!r} could not be reached: {type(exc).__name__}: {detail}") from exc
        if response.status >= 400:
            raw = b""
            try:
                raw = await response.read(_ERROR_BODY_LIMIT)
            except http1.HTTPError:
                pass
            raise UpstreamStatus(response.status, target.scrub(_error_message(target, response.status, raw[:_ERROR_BODY_LIMIT])),
                                 headers=kept_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers))
        return response

    def _request(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None) -> httpx.Request:
        prepared = self._prepared.get(target.name)
        if prepared is None:
            headers = httpx.Headers([*_BASE_HEADERS, *target.headers])
            try:
                endpoint: http1.Endpoint | None = _endpoint(target)
            except ValueError:  # H1Transport says why (UnsupportedProtocol)
                endpoint = None
            prepared = self._prepared[target.name] = (httpx.URL(target.url), headers, endpoint)
        url, headers, endpoint = prepared
        if extra_headers:
            headers = httpx.Headers(headers)
            headers.update(extra_headers)
        # A Headers instance is copied as is (no re-normalization), so this stays cheap per request.
        # The endpoint extension carries the provider's proxy and trust to H1Transport (tracing's path).
        return httpx.Request("POST", url, headers=headers, content=body,
                             extensions={"timeout": self._timeout, ENDPOINT_EXTENSION: endpoint})

    async def _send(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None) -> httpx.Response:
        try:
            response = await self.transport.handle_async_request(self._request(target, body, extra_headers))
        except httpx.TimeoutException as exc:
            if _refused_or_reset(exc):
                detail = target.scrub(str(exc)) or "connection failed"
                raise UpstreamError(f"upstream {target.name!r} could not be reached: {detail}") from exc
            raise UpstreamTimeout(f"upstream {target.name!r} did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            detail = target.scrub(str(exc)) or "no detail"
            raise UpstreamError(f"upstream {target.name!r} could not be reached: {type(exc).__name__}: {detail}") from exc
        if response.status_code >= 400:
            raw = b""
            try:
                raw = await _read_capped(response)
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
            raise UpstreamStatus(response.status_code, target.scrub(_error_message(target, response.status_code, raw)),
                                 headers=kept_headers(response.headers.items()))
        return response

    async def post(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> tuple[Any, bytes]:
        """POST ``body``; the parsed JSON answer and its bytes (error statuses raise UpstreamStatus)."""
        extra_headers = self._hooked(extra_headers)
        pool = self.pool()
        if pool is not None:
            return await self._post_native(pool, target, body, extra_headers)
        response = await self._send(target, body, extra_headers)
        try:
            raw = await response.aread()
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream {target.name!r} stopped answering mid-response") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {target.name!r} broke off its response: {type(exc).__name__}") from exc
        finally:
            await response.aclose()
        return _json_answer(target, raw, response.headers.get("content-type", ""))

    async def _post_native(self, pool: http1.Pool, target: Target, body: bytes,
                           extra_headers: Mapping[str, str] | None) -> tuple[Any, bytes]:
        response = await self._send_native(pool, target, body, extra_headers)
        try:
            raw = await response.read()
        except http1.ReadTimeout as exc:
            raise UpstreamTimeout(f"upstream {target.name!r} stopped answering mid-response") from exc
        except http1.HTTPError as exc:
            raise UpstreamError(f"upstream {target.name!r} broke off its response: {type(exc).__name__}") from exc
        return _json_answer(target, raw, response.header("content-type") or "")

    async def post_json(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> Any:
        """POST ``body`` and return the parsed JSON answer."""
        return (await self.post(target, body, extra_headers))[0]

    async def open_stream(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> "UpstreamStream":
        """POST ``body`` for a streamed answer; error statuses raise before any byte reaches the client."""
        extra_headers = self._hooked(extra_headers)
        pool = self.pool()
        if pool is not None:
            native = await self._send_native(pool, target, body, extra_headers)
            content_type = native.header("content-type") or ""
            if not _is_event_stream(content_type):
                raise await _not_a_stream(target, content_type, _read_native(native), native.aclose)
            return UpstreamStream(target, native.next_chunk, content_type, native.aclose, native)
        response = await self._send(target, body, extra_headers)
        content_type = response.headers.get("content-type", "")
        if not _is_event_stream(content_type):
            raise await _not_a_stream(target, content_type, _read_capped(response), response.aclose)
        return UpstreamStream(target, _next_of(response.aiter_raw()), content_type, response.aclose)


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


async def _read_native(response: http1.Response) -> bytes:
    return (await response.read(_ERROR_BODY_LIMIT))[:_ERROR_BODY_LIMIT]


async def _not_a_stream(target: Target, content_type: str, body: Awaitable[bytes],
                        close: Callable[[], Awaitable[None]]) -> BadUpstreamResponse:
    """The error for a 200 to a streamed request that is not an event stream (JSON, HTML, nothing)."""
    try:
        raw = await body
    except (httpx.HTTPError, http1.HTTPError):
        raw = b""
    finally:
        try:
            await close()
        except (httpx.HTTPError, OSError):
            pass
    kind = _media_type(content_type) or "no content type"
    detail = _error_detail(raw)
    return BadUpstreamResponse(target.scrub(f"upstream {target.name!r} answered a streamed request with {kind}, "
                                            f"not an event stream" + (f": {detail}" if detail else "")))


def _json_answer(target: Target, raw: bytes, content_type: str) -> tuple[Any, bytes]:
    """The parsed answer; a body that is not JSON at all (an HTML page, an event stream) is a bad response."""
    try:
        return json.loads(raw), raw
    except ValueError as exc:
        kind = _media_type(content_type) or "no content type"
        what = "an empty body" if not raw.strip() else f"{kind} that is not JSON"
        raise BadUpstreamResponse(f"upstream {target.name!r} answered 200 with {what}") from exc


def _refused_or_reset(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp (a comparison transport) maps every aiohttp connection error (refused, reset,
    disconnected) to ConnectTimeout; only a real timeout should answer 504."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError)


async def _read_capped(response: httpx.Response) -> bytes:
    if response.is_stream_consumed:
        return response.content[:_ERROR_BODY_LIMIT]
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > _ERROR_BODY_LIMIT:
            break
    return bytes(data[:_ERROR_BODY_LIMIT])


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
    """An open streamed response, from either transport: ``async for chunk in stream`` yields raw
    bytes as they arrive; ``aclose()`` on an unfinished one drops the connection, so the upstream
    sees the client leave. ``next_chunk()`` gives the body's next bytes, None at its end."""

    def __init__(self, target: Target, next_chunk: Callable[[], Awaitable[bytes | None]], content_type: str,
                 close: Callable[[], Awaitable[None]], native: http1.Response | None = None) -> None:
        self.target = target
        self.content_type = content_type
        self._next = next_chunk
        self._close = close
        self._native = native
        self._late: Callable[[], GatewayError] | None = None
        self._head: list[bytes] = []  # read by ``judge``, yielded first

    async def judge(self, first: Any) -> None:
        """Read until ``first`` (adapt.FirstEvent) has judged the first event; the bytes read are
        kept and yielded first. On a bad start the connection is closed and the error raised, so
        the attempt fails before any byte reaches the client (retried, or the fallback serves it)."""
        try:
            while True:
                try:
                    chunk = await self._next()
                except (httpx.HTTPError, http1.HTTPError) as exc:
                    raise self._broken(exc) from exc
                if chunk is None:
                    first.end()
                    return
                self._head.append(chunk)
                if first.feed(chunk):
                    return
        except BaseException:
            await self.aclose()
            raise

    def bound(self, seconds: float, late: Callable[[], GatewayError]) -> Any:
        """This stream, its rest bounded to ``seconds`` from now (``late()`` is raised past it): on
        the own client the response's deadline (no timer of its own), else retry.BoundedStream."""
        if self._native is None:
            return BoundedStream(self, time.monotonic() + seconds, late)
        self._native.limit(seconds)
        self._late = late
        return self

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # ``judge`` read the start through the same ``next_chunk``: this goes on from there.
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        next_chunk = self._next
        try:
            while (chunk := await next_chunk()) is not None:
                yield chunk
        except http1.DeadlineExceeded:
            if self._late is None:
                raise UpstreamTimeout(f"upstream {self.target.name!r} stopped streaming (deadline)") from None
            raise self._late() from None
        except (httpx.HTTPError, http1.HTTPError) as exc:
            raise self._broken(exc) from exc

    def _broken(self, exc: Exception) -> UpstreamError:
        if isinstance(exc, (httpx.TimeoutException, http1.ReadTimeout)):
            return UpstreamTimeout(f"upstream {self.target.name!r} stopped streaming (timeout)")
        return UpstreamError(f"upstream {self.target.name!r} broke off its stream: {type(exc).__name__}")

    async def aclose(self) -> None:
        try:
            await self._close()
        except (httpx.HTTPError, http1.HTTPError, OSError):
            pass


__all__ = ["H1Transport", "Upstream", "UpstreamStream", "build_client"]


def _next_of(chunks: AsyncIterator[bytes]) -> Callable[[], Awaitable[bytes | None]]:
    """``next_chunk`` over an async iterator (httpx's ``aiter_raw``)."""

    async def next_chunk() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    return next_chunk
