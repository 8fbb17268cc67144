"""OpenTelemetry traces when the bundle configures ``tracing``: a server span per request, a client
span per upstream attempt, W3C ``traceparent`` propagated upstream, OTLP/HTTP export.

Stage: runtime, observability (built in the lifespan). Imports opentelemetry and runtime.http.asgi
(ASGI types, the request's state); ``traceparent`` reaches upstreams through runtime.upstream.client.Upstream's header hooks. Uses its own TracerProvider, never OpenTelemetry's global one.

Config: archgw's ``tracing: {random_sampling: <percent>}`` turns tracing on; archc's
``gateway.tracing: {otlp_endpoint, service_name}`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_ENDPOINT``) says where spans go (default http://127.0.0.1:4318/v1/traces).
Tracing is read once at start; changing it needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable, Iterator, Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from runtime.http.asgi import ASGIApp, Message, Receive, Scope, Send, request_state

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"


def endpoint_from(gateway_tracing: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if gateway_tracing.get("otlp_endpoint"):
        return str(gateway_tracing["otlp_endpoint"])
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


class Tracing:
    """A private tracer provider with a batching OTLP/HTTP exporter."""

    def __init__(self, endpoint: str, *, service_name: str = "archc", sample_ratio: float = 1.0, exporter: SpanExporter | None = None) -> None:
        self.endpoint = endpoint
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(max(0.0, min(1.0, sample_ratio)))),
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=endpoint, timeout=5), schedule_delay_millis=500)
        )
        self.tracer = self.provider.get_tracer("archc")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_bundle(cls, bundle: Any, env: Mapping[str, str]) -> "Tracing | None":
        archgw = bundle.tracing
        gateway = (bundle.extensions.get("gateway") or {}).get("tracing")
        if archgw is None and not gateway:
            return None
        gateway = gateway or {}
        percent = (archgw or {}).get("random_sampling", 100)
        return cls(endpoint_from(gateway, env), service_name=str(gateway.get("service_name", "archc")), sample_ratio=float(percent) / 100.0)

    @contextlib.contextmanager
    def attempt_span(self, provider: str) -> Iterator[None]:
        """A client span around one upstream attempt; the request hook puts it in ``traceparent``."""
        with self.tracer.start_as_current_span(f"upstream {provider}", kind=SpanKind.CLIENT,
                                               attributes={"archc.provider": provider}, record_exception=False) as span:
            try:
                yield
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                raise

    def trace_headers(self) -> dict[str, str]:
        """The W3C trace context of the current span (``traceparent``), for an upstream request."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        return carrier

    def install(self, gateway: Any) -> None:
        """Propagate trace context on every upstream request of a GatewayState: a header hook on its
        ``upstream`` (runtime.upstream.client.Upstream; the request still goes straight to the lean HTTP/1.1
        pool). Idempotent: called again on each reload."""
        hooks = gateway.upstream.header_hooks
        if self.trace_headers not in hooks:
            hooks.append(self.trace_headers)

    async def aclose(self) -> None:
        # shutdown() flushes and joins the exporter thread: off the event loop.
        await asyncio.to_thread(self.provider.shutdown)


def current_tracing(scope: Scope) -> "Tracing | None":
    """The app's Tracing (lifespan state), or None when tracing is off."""
    return request_state(scope).tracing


class TracingMiddleware:
    """A SERVER span per HTTP request, continuing the caller's ``traceparent`` when sent."""

    def __init__(self, app: ASGIApp, get_tracing: Callable[[Scope], Tracing | None]) -> None:
        self.app = app
        self.get_tracing = get_tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracing = self.get_tracing(scope) if scope["type"] == "http" else None
        if tracing is None:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        parent = tracing.propagator.extract(carrier)
        method, path = scope.get("method", "GET"), scope.get("path", "")
        attributes = {"http.request.method": method, "url.path": path}
        with tracing.tracer.start_as_current_span(f"{method} {path}", context=parent, kind=SpanKind.SERVER,
                                                  attributes=attributes, record_exception=False) as span:

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    for k, v in message.get("headers") or ():
                        if k in (b"x-arch-route", b"x-arch-target", b"x-arch-attempts"):
                            span.set_attribute("archc." + k.decode()[7:].replace("-", "_"), v.decode("latin-1"))
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_wrapper)
