"""The only HTTP-client user: POST to a provider, map transport failures to the UpstreamError tree.

Stage: upstream. Imports httpx (its API) over the httpx-aiohttp transport (plain httpx's pool
collapses under concurrency, encode/httpx#3215), plus runtime.errors and runtime.providers.
Streams are yielded as the bytes arrive; closing the iterator closes the upstream connection.
Over the default aiohttp transport, requests go straight to its aiohttp session (the httpx
Request/Response layer cost more per request than the rest of the gateway); any other transport
(httpx's own, MockTransport in tests, tracing's wrapper) is driven through the httpx API.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from runtime.errors import UpstreamError, UpstreamStatus, UpstreamTimeout
from runtime.providers import Target
from runtime.settings import Settings

_ERROR_BODY_LIMIT = 64 * 1024


def build_client(settings: Settings) -> httpx.AsyncClient:
    """The shared upstream client (created in the lifespan, closed with it)."""
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)
    transport: httpx.AsyncBaseTransport
    if settings.upstream_transport == "httpx":  # plain httpx, kept for comparison (bench/gateway.py)
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    else:
        transport = AiohttpTransport(limits=limits, trust_env=False)
        # Our own session: no cookie jar (one user's upstream cookies must never reach the next
        # user), created on first use inside the running loop as httpx-aiohttp would.
        transport.client = lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry,
                                           ssl=transport.ssl_context),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False)
    timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


class Upstream:
    """Sends through the client's transport with the httpx API (``httpx.Request``/``Response``).

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
        self._prepared: dict[str, tuple[httpx.URL, httpx.Headers]] = {}
        # The aiohttp fast path, while ``transport`` is still the plain AiohttpTransport.
        # ``native=False`` (ARCHC_UPSTREAM_TRANSPORT=httpx-aiohttp) keeps the httpx API over it, for comparison.
        self._native = self.transport if native and type(self.transport) is AiohttpTransport else None
        self._native_timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout_s, sock_read=read_timeout_s, connect=read_timeout_s)
        self._native_prepared: dict[str, tuple[str, dict[str, str]]] = {}

    def _session(self) -> aiohttp.ClientSession | None:
        native = self._native
        if native is None or self.transport is not native:  # replaced (tracing wraps it): httpx path
            return None
        if not isinstance(native.client, aiohttp.ClientSession):
            native.client = native.get_client()
        return native.client

    async def _send_native(self, session: aiohttp.ClientSession, target: Target, body: bytes,
                           extra_headers: Mapping[str, str] | None) -> aiohttp.ClientResponse:
        prepared = self._native_prepared.get(target.name)
        if prepared is None:
            headers = {"accept": "application/json, text/event-stream", "accept-encoding": "identity", "user-agent": "archc"}
            headers.update(target.headers)
            prepared = self._native_prepared[target.name] = (target.url, headers)
        url, headers = prepared
        if extra_headers:
            headers = {**headers, **extra_headers}
        try:
            response = await session.request("POST", url, headers=headers, data=body, allow_redirects=False,
                                             auto_decompress=False, timeout=self._native_timeout)
        except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError (asyncio.TimeoutError)
            raise UpstreamTimeout(f"upstream {target.name!r} did not answer in time ({type(exc).__name__})") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # refused, reset, bad URL
            detail = target.scrub(str(exc)) or "no detail"
            raise UpstreamError(f"upstream {target.name!r} could not be reached: {type(exc).__name__}: {detail}") from exc
        if response.status >= 400:
            raw = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    raw += chunk
                    if len(raw) > _ERROR_BODY_LIMIT:
                        break
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            finally:
                await _release(response)
            raise UpstreamStatus(response.status, target.scrub(_error_message(target, response.status, bytes(raw[:_ERROR_BODY_LIMIT]))))
        return response

    def _request(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None) -> httpx.Request:
        prepared = self._prepared.get(target.name)
        if prepared is None:
            headers = httpx.Headers([("accept", "application/json, text/event-stream"), ("accept-encoding", "identity"),
                                     ("user-agent", "archc"), *target.headers])
            prepared = self._prepared[target.name] = (httpx.URL(target.url), headers)
        url, headers = prepared
        if extra_headers:
            headers = httpx.Headers(headers)
            headers.update(extra_headers)
        # A Headers instance is copied as is (no re-normalization), so this stays cheap per request.
        return httpx.Request("POST", url, headers=headers, content=body, extensions={"timeout": self._timeout})

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
            raise UpstreamStatus(response.status_code, target.scrub(_error_message(target, response.status_code, raw)))
        return response

    async def post(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> tuple[Any, bytes]:
        """POST ``body``; the parsed JSON answer and its bytes (error statuses raise UpstreamStatus)."""
        session = self._session()
        if session is not None:
            return await self._post_native(session, target, body, extra_headers)
        response = await self._send(target, body, extra_headers)
        try:
            raw = await response.aread()
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream {target.name!r} stopped answering mid-response") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {target.name!r} broke off its response: {type(exc).__name__}") from exc
        finally:
            await response.aclose()
        try:
            return json.loads(raw), raw
        except ValueError as exc:
            raise UpstreamError(f"upstream {target.name!r} answered with invalid JSON") from exc

    async def _post_native(self, session: aiohttp.ClientSession, target: Target, body: bytes,
                           extra_headers: Mapping[str, str] | None) -> tuple[Any, bytes]:
        response = await self._send_native(session, target, body, extra_headers)
        try:
            raw = await response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {target.name!r} stopped answering mid-response") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"upstream {target.name!r} broke off its response: {type(exc).__name__}") from exc
        finally:
            response.release()
        try:
            return json.loads(raw), raw
        except ValueError as exc:
            raise UpstreamError(f"upstream {target.name!r} answered with invalid JSON") from exc

    async def post_json(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> Any:
        """POST ``body`` and return the parsed JSON answer."""
        return (await self.post(target, body, extra_headers))[0]

    async def open_stream(self, target: Target, body: bytes, extra_headers: Mapping[str, str] | None = None) -> "UpstreamStream":
        """POST ``body`` for a streamed answer; error statuses raise before any byte reaches the client."""
        session = self._session()
        if session is not None:
            return NativeStream(target, await self._send_native(session, target, body, extra_headers))
        return UpstreamStream(target, await self._send(target, body, extra_headers))


def _refused_or_reset(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp maps every aiohttp connection error (refused, reset, disconnected) to
    ConnectTimeout; only a real timeout should answer 504."""
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


def _error_message(target: Target, status: int, raw: bytes) -> str:
    detail = ""
    try:
        body = json.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            detail = str(err.get("message") or "")
        elif isinstance(err, str):
            detail = err
    except ValueError:
        detail = raw[:300].decode("utf-8", "replace").strip()
    return f"upstream {target.name!r} answered {status}" + (f": {detail}" if detail else "")


class UpstreamStream:
    """An open streamed response: ``async for chunk in stream`` yields raw bytes as they arrive."""

    def __init__(self, target: Target, response: httpx.Response) -> None:
        self.target = target
        self.response = response

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream {self.target.name!r} stopped streaming (timeout)") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {self.target.name!r} broke off its stream: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        # Closing an unfinished aiohttp response drops the connection: the upstream sees the client leave.
        try:
            await self.response.aclose()
        except (httpx.HTTPError, OSError):
            pass


class NativeStream:
    """``UpstreamStream`` over an aiohttp response (the fast path): raw bytes as they arrive."""

    def __init__(self, target: Target, response: aiohttp.ClientResponse) -> None:
        self.target = target
        self.response = response

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {self.target.name!r} stopped streaming (timeout)") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"upstream {self.target.name!r} broke off its stream: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        # Releasing an unfinished aiohttp response drops the connection: the upstream sees the client leave.
        try:
            await _release(self.response)
        except (aiohttp.ClientError, OSError):
            pass


async def _release(response: aiohttp.ClientResponse) -> None:
    response.release()
    await response.wait_for_close()


__all__ = ["NativeStream", "Upstream", "UpstreamStream", "build_client"]
