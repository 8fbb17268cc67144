"""Plano 0.4's routes over model pools, served by a real `archc serve`: the router (a fake Arch-Router
server) names the route, the route's selection policy orders its pool, and the pool is the chain
that serves the request. ``prefer: cheapest`` reads a models.dev catalog file and picks again when
the file changes; ``prefer: fastest`` leaves a model that has become slow; ``prefer: none`` serves
the first healthy model (a failing one is retried on the next, then skipped while it cools down)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, Response, error, openai_text
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

CONFIG = """version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
routing: {{model: Arch-Router, llm_provider: arch-router, timeout_ms: 3000}}
model_providers:
  - name: arch-router
    model: arch/Arch-Router-1.5B
    base_url: {router}
  - model: openai/big
    base_url: {big}/v1
    default: true
  - model: openai/small
    base_url: {small}/v1
model_metrics_sources:
  - type: cost
    provider: models.dev
    url: {catalog}
    refresh_interval: 1
routing_preferences:
  - name: cheap
    description: anything about prices
    models: [openai/big, openai/small]
    selection_policy: {{prefer: cheapest}}
  - name: quick
    description: anything about speed
    models: [openai/big, openai/small]
    selection_policy: {{prefer: fastest}}
  - name: steady
    description: anything about steadiness
    models: [openai/big, openai/small]
gateway:
  cooldown: {{failures: 1, seconds: 60}}
"""


def router_model(fmt: str, body: Any) -> Response:
    """Arch-Router naming the route whose keyword the last user turn holds."""
    prompt = body["messages"][0]["content"]
    turns = json.loads(prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0])
    text = turns[-1]["content"]
    route = next((r for r in ("cheap", "quick", "steady") if r in text), "other")
    return Response(json={"id": "r", "object": "chat.completion", "created": 1, "model": "arch",
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"route": route})},
                                       "finish_reason": "stop"}]})


def catalog(big: float, small: float) -> str:
    """models.dev's api.json shape: provider -> models -> cost per million tokens."""
    return json.dumps({"openai": {"id": "openai", "models": {
        "big": {"id": "big", "cost": {"input": big, "output": big * 4}},
        "small": {"id": "small", "cost": {"input": small, "output": small * 4}}}}})


@pytest.fixture
def setup(tmp_path: Path, start_gateway: Callable[..., Gateway]) -> Iterator[tuple[Gateway, FakeUpstream, FakeUpstream, Path]]:
    prices = tmp_path / "api.json"
    prices.write_text(catalog(big=1.0, small=5.0))
    with FakeUpstream(default=router_model) as router, FakeUpstream(default=openai_text("big")) as big, \
            FakeUpstream(default=openai_text("small")) as small:
        config = tmp_path / "plano.yaml"
        config.write_text(CONFIG.format(router=router.url, big=big.url, small=small.url, catalog=f"file://{prices}"))
        yield start_gateway(config), big, small, prices


def ask(gw: Gateway, text: str) -> httpx.Response:
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=20,
                   json={"model": "none", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def test_cheapest_reads_the_catalog_and_picks_again_when_it_changes(setup) -> None:
    gw, big, small, prices = setup
    first = ask(gw, "cheap question 1")
    assert (first.headers["x-arch-route"], first.headers["x-arch-target"]) == ("cheap", "openai/big")
    assert first.headers["x-arch-pool"] == "openai/big > openai/small (prefer cheapest)"
    prices.write_text(catalog(big=9.0, small=0.5))  # read again within refresh_interval (1 s)
    deadline = time.monotonic() + 10
    while ask(gw, f"cheap question {time.monotonic()}").headers["x-arch-target"] != "openai/small":
        assert time.monotonic() < deadline, "the new prices were not read"
        time.sleep(0.2)
    again = ask(gw, "cheap question again")
    assert again.headers["x-arch-pool"] == "openai/small > openai/big (prefer cheapest)"
    assert again.json()["choices"][0]["message"]["content"] == "small"
    prices.write_text("{not json")  # a broken catalog keeps the last good prices
    time.sleep(1.5)
    assert ask(gw, "cheap question, broken catalog").headers["x-arch-target"] == "openai/small"
    assert "could not be read (JSONDecodeError" in gw.logs()


def test_fastest_leaves_a_model_that_has_become_slow(setup) -> None:
    gw, big, small, _ = setup
    served = [ask(gw, f"quick question {i}").headers["x-arch-target"] for i in range(4)]
    assert set(served) == {"openai/big", "openai/small"}  # each member is measured before it is ranked

    def slow(fmt: str, body: Any) -> Response:
        time.sleep(0.3)
        return openai_text("big")(fmt, body)

    big.default = slow
    later = [ask(gw, f"quick question later {i}").headers["x-arch-target"] for i in range(8)]
    assert later[-5:] == ["openai/small"] * 5, later


def test_none_serves_the_first_healthy_model_in_order(setup) -> None:
    gw, big, small, _ = setup
    assert ask(gw, "steady one").headers["x-arch-target"] == "openai/big"
    big.script(error(500, "overloaded"))
    failed_over = ask(gw, "steady two")
    assert failed_over.headers["x-arch-target"] == "openai/small"  # the pool's next model answered
    assert failed_over.headers["x-arch-attempts"] == "openai/big=500, openai/small=ok"
    assert failed_over.json()["choices"][0]["message"]["content"] == "small"
    cooling = ask(gw, "steady three")  # big cools down: skipped, not tried
    assert cooling.headers["x-arch-attempts"] == "openai/small=ok"


def test_the_routing_endpoints_answer_the_decision_alone_in_planos_shape(setup) -> None:
    gw, big, small, _ = setup
    trace = "0af7651916cd43dd8448eb211c80319c"
    chat = httpx.post(gw.url + "/routing/v1/chat/completions", timeout=20,
                      headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01", "x-model-affinity": "sess-42"},
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "a steady question"}]})
    assert chat.status_code == 200, chat.text
    assert chat.json() == {"models": ["openai/big", "openai/small"], "route": "steady", "trace_id": trace,
                           "session_id": "sess-42", "pinned": False, "switched": False}
    messages = httpx.post(gw.url + "/routing/v1/messages", timeout=20, headers={"anthropic-version": "2023-06-01"},
                          json={"model": "claude", "messages": [{"role": "user", "content": [{"type": "text", "text": "cheap?"}]}]})
    assert messages.status_code == 200 and messages.json()["route"] == "cheap"  # no max_tokens needed for a decision
    assert messages.json()["models"] == ["openai/big", "openai/small"] and len(messages.json()["trace_id"]) == 32
    responses = httpx.post(gw.url + "/routing/v1/responses", timeout=20,
                           json={"model": "x", "input": "nothing in particular", "routing_preferences": [{"name": "n"}]})
    assert responses.status_code == 200
    assert responses.json()["route"] is None and responses.json()["models"] == ["openai/big"]  # the default, no pool
    assert responses.headers["x-arch-fallback"] == "other" and "routing_preferences" in responses.headers["x-arch-ignored"]
    bad = httpx.post(gw.url + "/routing/v1/messages", timeout=20, json={"messages": "not a list"})
    assert bad.status_code == 400 and bad.json()["type"] == "error"  # the endpoint's own error format
    assert big.requests == [] and small.requests == []  # a decision calls no upstream


class _Prometheus:
    """A Prometheus HTTP API on loopback answering every instant query with ``answer`` (and recording the query)."""

    def __init__(self) -> None:
        import http.server
        import threading
        from urllib.parse import parse_qs, urlsplit

        owner = self
        self.answer: bytes = b"{}"
        self.queries: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                owner.queries.append(parse_qs(parts.query).get("query", [""])[0] if parts.path == "/api/v1/query" else "")
                self.send_response(200 if parts.path == "/api/v1/query" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(owner.answer)))
                self.end_headers()
                self.wfile.write(owner.answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def says(self, **seconds: float) -> None:
        self.answer = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"model_name": f"openai/{name}"}, "value": [1700000000, str(s)]} for name, s in seconds.items()]}}).encode()


def test_fastest_ranks_by_the_prometheus_latency_source(tmp_path: Path, start_gateway: Callable[..., Gateway]) -> None:
    """A ``type: latency, provider: prometheus`` source ranks the ``fastest`` pool from the first request
    (no measuring round), is read again every refresh_interval, and a broken answer keeps the last numbers."""
    prometheus = _Prometheus()
    prometheus.says(big=0.9, small=0.05)
    query = "avg by (model_name) (rate(plano_llm_latency_seconds_sum[5m]))"
    try:
        with FakeUpstream(default=router_model) as router, FakeUpstream(default=openai_text("big")) as big, \
                FakeUpstream(default=openai_text("small")) as small:
            config = tmp_path / "plano.yaml"
            text = CONFIG.format(router=router.url, big=big.url, small=small.url, catalog="unused.json")
            text = text.replace("model_metrics_sources:\n", "model_metrics_sources:\n  - type: latency\n    provider: prometheus\n"
                                f"    url: {prometheus.url}\n    query: '{query}'\n    refresh_interval: 1\n")
            config.write_text(text)
            gw = start_gateway(config)
            deadline = time.monotonic() + 10
            while not prometheus.queries:  # the first read happens as the gateway starts
                assert time.monotonic() < deadline, "the latency source was never read"
                time.sleep(0.05)
            assert prometheus.queries[0] == query
            first = ask(gw, "quick question 1")
            assert first.headers["x-arch-pool"] == "openai/small > openai/big (prefer fastest)"
            assert first.headers["x-arch-target"] == "openai/small"
            prometheus.says(big=0.02, small=0.4)
            while ask(gw, f"quick question {time.monotonic()}").headers["x-arch-target"] != "openai/big":
                assert time.monotonic() < deadline + 10, "the new latencies were not read"
                time.sleep(0.2)
            prometheus.answer = b'{"status": "error", "error": "bad_data: parse error"}'
            time.sleep(1.5)
            assert ask(gw, "quick, broken source").headers["x-arch-target"] == "openai/big"
            assert "latency source" in gw.logs() and "bad_data: parse error" in gw.logs()
    finally:
        prometheus.server.shutdown()
        prometheus.server.server_close()
