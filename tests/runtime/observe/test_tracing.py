"""runtime/observe/tracing.py: spans exported over OTLP/HTTP to a local receiver; traceparent goes upstream."""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from archc.bundle import seal
from runtime.upstream.targets import build_targets
from runtime.upstream.retry import Cooldown, Resilience, RetryPolicy
from runtime.observe.tracing import DEFAULT_ENDPOINT, Tracing, TracingMiddleware, endpoint_from
from runtime.upstream.client import Upstream, build_pool
from tests.support.gateway import bundle_dict, provider
from tests.support.mock_pool import MockPool

pytestmark = pytest.mark.anyio

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_PARENT = "00f067aa0ba902b7"


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", 0))
        self.server.bodies.append((self.path, self.headers.get("content-type"), self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def otlp_receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    """A local OTLP/HTTP trace receiver on 127.0.0.1 recording what it is sent."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _spans(server: Any) -> list[Any]:
    spans = []
    for path, content_type, body in server.bodies:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    return spans


def test_endpoint_and_from_bundle() -> None:
    assert endpoint_from({"otlp_endpoint": "http://127.0.0.1:1/v1/traces"}, {}) == "http://127.0.0.1:1/v1/traces"
    assert endpoint_from({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318/"}) == "http://h:4318/v1/traces"
    assert endpoint_from({}, {}) == DEFAULT_ENDPOINT
    base = {"source": {}, "listeners": [], "providers": [], "aliases": [], "routes": [], "default_model": None,
            "routing": {}, "router": None}
    assert Tracing.from_bundle(seal(base), {}) is None


async def test_server_and_attempt_spans_exported_and_traceparent_propagated(otlp_receiver: Any) -> None:
    endpoint = f"http://127.0.0.1:{otlp_receiver.server_address[1]}/v1/traces"
    bundle = seal({"source": {}, "listeners": [], "providers": [], "aliases": [], "routes": [], "default_model": None,
                   "routing": {}, "router": None, "tracing": {"random_sampling": 100},
                   "extensions": {"gateway": {"tracing": {"otlp_endpoint": endpoint, "service_name": "archc-test"}}}})
    tracing = Tracing.from_bundle(bundle, {})
    assert tracing is not None and tracing.endpoint == endpoint
    upstream_headers: list[dict] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        upstream_headers.append(dict(request.headers))
        status = 503 if request.url.path == "/down" else 200
        return httpx.Response(status, json={"ok": True})

    pool = MockPool(upstream)
    sender = Upstream(pool)
    tracing.install(SimpleNamespace(upstream=sender))
    targets = build_targets(seal(bundle_dict([provider("openai/down", "http://upstream.test/down", default=True),
                                              provider("openai/up", "http://upstream.test/up")])), {})
    resilience = Resilience(RetryPolicy(fallbacks={"down": ("up",)}), Cooldown(0, 0), span=tracing.attempt_span)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        async def attempt(name: str) -> Any:
            return await sender.post_json(targets[f"openai/{name}"], b"{}")  # a 503 raises UpstreamStatus

        await resilience.run("down", attempt)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-arch-target", b"up")]})
        await send({"type": "http.response.body", "body": b"{}"})

    gateway = TracingMiddleware(app, lambda scope: tracing)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        r = await client.post("/v1/chat/completions", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_PARENT}-01"})
        assert r.status_code == 200
    await pool.aclose()
    await tracing.aclose()  # flushes to the receiver

    # Upstream saw the caller's trace id, with one of our attempt spans as parent.
    assert len(upstream_headers) == 2
    parents = [h["traceparent"].split("-") for h in upstream_headers]
    assert all(p[1] == CALLER_TRACE for p in parents)
    spans = {s.name: s for s in _spans(otlp_receiver)}
    assert set(spans) == {"POST /v1/chat/completions", "upstream down", "upstream up"}
    server = spans["POST /v1/chat/completions"]
    assert server.trace_id.hex() == CALLER_TRACE and server.parent_span_id.hex() == CALLER_PARENT
    for name, (_, _, span_id, _) in zip(("upstream down", "upstream up"), parents):
        assert spans[name].span_id.hex() == span_id  # the header names that attempt's span
        assert spans[name].parent_span_id == server.span_id
    assert spans["upstream down"].status.code == 2  # ERROR
    attrs = {a.key: a.value for a in server.attributes}
    assert attrs["http.response.status_code"].int_value == 200 and attrs["archc.target"].string_value == "up"


async def test_traceparent_goes_out_on_the_lean_http1_path() -> None:
    """Tracing adds its header through the sender's hook: the sender keeps posting to the same
    http1 pool (nothing wraps or replaces it), and the header arrives over a real socket."""
    from runtime.settings import Settings
    from tests.support.fake_upstream import FakeUpstream, openai_text

    tracing = Tracing("http://127.0.0.1:9/v1/traces", exporter=_NullExporter())
    with FakeUpstream() as up:
        up.script(openai_text("hi"))
        target = build_targets(seal(bundle_dict([provider("openai/gpt-4o", up.openai_endpoint(), default=True)])), {})["openai/gpt-4o"]
        pool = build_pool(Settings())
        sender = Upstream(pool)
        holder = SimpleNamespace(upstream=sender)
        tracing.install(holder)
        tracing.install(holder)  # on every reload: idempotent
        assert sender.header_hooks == [tracing.trace_headers]
        assert sender.pool is pool, "tracing replaced the sender's pool"
        with tracing.tracer.start_as_current_span("server") as span:
            await sender.post_json(target, b'{"model":"gpt-4o","messages":[]}')
            trace_id = format(span.get_span_context().trace_id, "032x")
        await pool.aclose()
    await tracing.aclose()
    sent = up.requests[0].headers["traceparent"].split("-")
    assert sent[0] == "00" and sent[1] == trace_id


class _NullExporter(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def test_no_tracing_configured_passes_through() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gateway = TracingMiddleware(app, lambda scope: None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        assert (await client.get("/healthz")).status_code == 204


@pytest.mark.e2e
def test_gateway_process_exports_spans_and_propagates_traceparent(otlp_receiver: Any, fake_upstream: Any, tmp_path: Any) -> None:
    import time

    from tests.support.gateway import Gateway, write_bundle

    endpoint = f"http://127.0.0.1:{otlp_receiver.server_address[1]}/v1/traces"
    data = bundle_dict([provider("openai/gpt-4o", fake_upstream.openai_endpoint(), default=True)],
                       extensions={"gateway": {"tracing": {"otlp_endpoint": endpoint}}})
    with Gateway(write_bundle(tmp_path, data)) as gw:
        with httpx.Client(base_url=gw.url) as client:
            r = client.post("/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                            headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_PARENT}-01"})
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while not any(s.name == "upstream openai/gpt-4o" for s in _spans(otlp_receiver)) and time.monotonic() < deadline:
            time.sleep(0.1)  # the batch processor exports every 0.5 s
    upstream_trace = fake_upstream.requests[0].headers["traceparent"].split("-")
    assert upstream_trace[1] == CALLER_TRACE
    spans = {s.name: s for s in _spans(otlp_receiver)}
    attempt = spans["upstream openai/gpt-4o"]
    assert attempt.trace_id.hex() == CALLER_TRACE and attempt.span_id.hex() == upstream_trace[2]
    assert attempt.parent_span_id == spans["POST /v1/chat/completions"].span_id


def test_a_traced_gateway_still_sends_over_http1(otlp_receiver: Any, fake_upstream: Any) -> None:
    """The app as `archc serve` builds it (default transport), tracing on: the generation's sender
    posts straight to the http1 pool, with the trace header."""
    from starlette.testclient import TestClient

    from runtime.app import create_app
    from runtime.http.asgi import APP
    from runtime.upstream import http1
    from runtime.settings import Settings

    endpoint = f"http://127.0.0.1:{otlp_receiver.server_address[1]}/v1/traces"
    bundle = seal(bundle_dict([provider("openai/gpt-4o", fake_upstream.openai_endpoint(), default=True)],
                              extensions={"gateway": {"tracing": {"otlp_endpoint": endpoint}}}))
    with TestClient(create_app(bundle, settings=Settings())) as client:
        r = client.post("/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        sender = client.app_state[APP].gateway.upstream
        assert type(sender.pool) is http1.Pool and len(sender.header_hooks) == 1
    assert fake_upstream.requests[0].headers["traceparent"].startswith("00-")
