"""Comparison transports for bench/gateway.py: `archc serve` with httpx's own client, or aiohttp's
through the httpx API (httpx-aiohttp), in place of runtime/upstream/http1.py's pool.

The gateway sends every upstream request through one interface (runtime.upstream.client.Connections:
``post(endpoint, header_block, body)`` answering a response with ``status``, ``headers``,
``header``, ``next_chunk``, ``read``, ``limit`` and ``aclose``, whose failures are
``runtime.upstream.http1.HTTPError``s). ``HttpxPool`` is that interface over an httpx transport, so the
rest of the gateway is the same code in every variant and the rows differ by the client alone.
For loopback comparison only: plain-http endpoints, no proxies, no per-provider TLS trust.

    python bench/transports.py httpx|httpx-aiohttp BUNDLE.json --port PORT [--log-level warning]

Needs the bench extra (``pip install -e '.[bench]'``: aiohttp, httpx-aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Optional

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.bundle import load  # noqa: E402
from runtime.upstream import http1  # noqa: E402
from runtime.settings import Settings  # noqa: E402

KINDS = ("httpx", "httpx-aiohttp")
_KEEPALIVE_S = 30.0


def _transport(kind: str, settings: Settings) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections,
                          keepalive_expiry=_KEEPALIVE_S)
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    aio = AiohttpTransport(limits=limits, trust_env=False)
    # Its own session: no cookie jar (one user's upstream cookies must never reach the next user).
    aio.client = lambda: aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry,
                                       ssl=aio.ssl_context),
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False)
    return aio


def _http1_error(exc: httpx.HTTPError) -> http1.HTTPError:
    """httpx's error as the pool's. httpx-aiohttp reports every aiohttp connection error (refused,
    reset) as ConnectTimeout: only a real timeout stays a timeout."""
    cause = exc.__cause__
    if isinstance(exc, httpx.TimeoutException) and not (cause is not None and type(cause).__module__.startswith("aiohttp")
                                                        and not isinstance(cause, TimeoutError)):
        return (http1.ConnectTimeout if isinstance(exc, httpx.ConnectTimeout) else http1.ReadTimeout)(str(exc))
    if isinstance(exc, (httpx.ConnectError, httpx.TimeoutException)):
        return http1.ConnectError(str(exc) or type(exc).__name__)
    return http1.Disconnected(str(exc) or type(exc).__name__)


class HttpxAnswer:
    """An httpx response behind runtime.upstream.client.Answer."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.aiter_raw()
        self.status = response.status_code
        self.headers = response.headers.raw
        self._deadline: Optional[float] = None

    def header(self, name: str) -> Optional[str]:
        return self._response.headers.get(name)

    def limit(self, seconds: float) -> None:
        self._deadline = asyncio.get_running_loop().time() + seconds

    async def next_chunk(self) -> Optional[bytes]:
        if self._deadline is not None:
            left = self._deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise http1.DeadlineExceeded("the upstream did not finish its answer within the request's deadline")
            try:
                async with asyncio.timeout(left):
                    return await self._next()
            except TimeoutError:
                raise http1.DeadlineExceeded("the upstream did not finish its answer within the request's deadline") from None
        return await self._next()

    async def _next(self) -> Optional[bytes]:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
        except httpx.HTTPError as exc:
            raise _http1_error(exc) from exc

    # The pool's own body reader: it needs only ``next_chunk`` and ``aclose``.
    read = http1.Response.read

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxPool:
    """runtime.upstream.client.Connections over an httpx transport (httpx's own pool, or aiohttp's)."""

    def __init__(self, kind: str, settings: Settings) -> None:
        if kind not in KINDS:
            raise ValueError(f"transport must be one of {', '.join(KINDS)}, not {kind!r}")
        self.transport = _transport(kind, settings)
        self.timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s).as_dict()
        self._urls: dict[bytes, httpx.URL] = {}
        self._headers: dict[bytes, httpx.Headers] = {}

    def _url(self, endpoint: http1.Endpoint) -> httpx.URL:
        url = self._urls.get(endpoint.prefix)
        if url is None:
            if endpoint.proxy is not None or endpoint.tls:
                raise http1.ConnectError("bench transports reach plain-http endpoints only (no proxy, no TLS)")
            target = endpoint.prefix.split(b" ", 2)[1].decode("latin-1")
            url = self._urls[endpoint.prefix] = httpx.URL(f"http://{endpoint.authority}{target}")
        return url

    def _parsed(self, block: bytes) -> httpx.Headers:
        headers = self._headers.get(block)
        if headers is None:
            lines = block.decode("latin-1").split("\r\n")
            headers = httpx.Headers([tuple(line.split(": ", 1)) for line in lines if line])  # type: ignore[misc]
            if len(self._headers) < 1024:  # per-request headers (traceparent) would grow it without end
                self._headers[block] = headers
        return headers

    async def post(self, endpoint: http1.Endpoint, headers: bytes, body: bytes) -> HttpxAnswer:
        request = httpx.Request("POST", self._url(endpoint), headers=self._parsed(headers), content=body,
                                extensions={"timeout": self.timeout})
        try:
            return HttpxAnswer(await self.transport.handle_async_request(request))
        except httpx.HTTPError as exc:
            raise _http1_error(exc) from exc

    async def aclose(self) -> None:
        await self.transport.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    from runtime.serve import configure_logging, run

    settings = Settings.from_env(port=args.port, log_level=args.log_level)
    configure_logging(settings.log_level)
    return run(load(args.bundle), settings, pool=HttpxPool(args.kind, settings))


if __name__ == "__main__":
    sys.exit(main())
