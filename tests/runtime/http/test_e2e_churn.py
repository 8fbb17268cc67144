"""Hostile connection patterns through a real `archc serve` process (runtime/http/connections.py).

- Every socket the client closes is released at once (no CLOSE_WAIT for the keep-alive time), also
  a bare connect-then-close; a churn of new connections never fails a request.
- An idle keep-alive connection is closed after ``ARCHC_KEEPALIVE_S`` (and not before: a connection
  that keeps being used stays open), and at once when the gateway shuts down.
- Over ``ARCHC_MAX_CLIENT_CONNECTIONS``, a new connection gets an immediate 503 in its client's
  format (and a log line and a metric), while the established ones keep being served.
- HTTP-layer rejections (oversized headers, broken framing) carry a JSON error in the format the
  path suggests, never an empty body.

The counts here are small (CI); `bench/soak.py --churn` runs 60,000 cycles.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from tests.support.churn import churn, client_sockets, close_wait, open_fds, settle
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = pytest.mark.e2e


def _bundle(tmp_path: Path, up: FakeUpstream) -> Path:
    return write_bundle(tmp_path, bundle_dict([provider("openai/gpt-4o", up.openai_endpoint(), auth="bearer",
                                                         key_env="CHURN_KEY", default=True)]))


def _start(start_gateway: Callable[..., Gateway], tmp_path: Path, up: FakeUpstream, **env: str) -> Gateway:
    return start_gateway(_bundle(tmp_path, up), env={"CHURN_KEY": "sk-churn", **env})


def _raw(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a new socket, read the answer until the server closes; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


def test_client_closed_sockets_are_released_at_once(start_gateway, fake_upstream, tmp_path):
    gw = _start(start_gateway, tmp_path, fake_upstream)
    # The reproduction: ten keep-alive requests, each on a socket the client then closes.
    for _ in range(10):
        with httpx.Client() as client:
            assert client.get(gw.url + "/healthz").status_code == 200
    for _ in range(10):  # and bare connect-then-close, nothing sent
        socket.create_connection(("127.0.0.1", gw.port)).close()
    left, waited = settle(gw.port, 3.0)
    assert left == 0, f"{left} sockets still in CLOSE_WAIT after {waited:.1f}s (keep-alive is 75 s)"
    assert waited < 1.0


def test_connection_churn_never_fails_a_request_and_leaves_nothing_open(start_gateway, fake_upstream, tmp_path):
    gw = _start(start_gateway, tmp_path, fake_upstream)
    assert gw.proc is not None
    pid = gw.proc.pid
    asyncio.run(churn(gw.port, pid, 200, 32))  # warm: the upstream pool is part of the steady state
    settle(gw.port)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as held:  # the measure sees a held connection
        _get_healthz(held)
        assert client_sockets(pid, gw.port) == 1
    settle(gw.port)
    fds_before = open_fds(pid)
    result = asyncio.run(churn(gw.port, pid, 3000, 32))
    assert result.failures == [] and result.cycles == 3000
    bare = asyncio.run(churn(gw.port, pid, 2000, 32, bare=True))
    assert bare.failures == [] and bare.cycles == 2000
    left, waited = settle(gw.port, 3.0)
    assert left == 0 and waited < 1.0, f"{left} CLOSE_WAIT sockets left after {waited:.1f}s"
    # Without the fix every one of these 5,000 sockets would still be open (75 s keep-alive timer).
    assert result.close_wait_peak < 500 and bare.close_wait_peak < 500
    assert client_sockets(pid, gw.port) == 0  # every client connection is gone
    # and nothing else grew but the upstream pool (at most one socket per concurrent request: 32)
    assert open_fds(pid) <= fds_before + 32
    assert httpx.get(gw.url + "/healthz").status_code == 200


def test_idle_keepalive_connection_is_closed_after_the_setting(start_gateway, fake_upstream, tmp_path):
    gw = _start(start_gateway, tmp_path, fake_upstream, ARCHC_KEEPALIVE_S="1")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert s.recv(65536) == b""  # the server closed the idle connection
        assert 0.5 < time.monotonic() - started < 5.0


def _get_healthz(s: socket.socket) -> None:
    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b'{"status":"ok"}'):
        answer += s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_connection_in_use_outlives_the_idle_setting(start_gateway, fake_upstream, tmp_path):
    gw = _start(start_gateway, tmp_path, fake_upstream, ARCHC_KEEPALIVE_S="1")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # each request restarts the idle timer
            _get_healthz(s)
            time.sleep(0.4)
        _get_healthz(s)  # the same socket, 2.5 s after its first request
        idle = time.monotonic()
        assert s.recv(65536) == b""
        assert 0.5 < time.monotonic() - idle < 5.0


def test_idle_connections_are_closed_at_once_on_shutdown(start_gateway, fake_upstream, tmp_path):
    gw = _start(start_gateway, tmp_path, fake_upstream)  # keep-alive 75 s
    assert gw.proc is not None
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        _get_healthz(s)
        stopping = time.monotonic()
        gw.proc.terminate()
        assert s.recv(65536) == b""  # closed by the gateway, not left for the keep-alive timer
        assert gw.proc.wait(10) == 0
        # hypercorn's graceful timeout is 5 s: an idle connection left open would hold the exit that long
        assert time.monotonic() - stopping < 3.0


def test_connection_cap_answers_503_in_the_client_format_and_serves_established_clients(
        start_gateway, fake_upstream, tmp_path):
    gw = _start(start_gateway, tmp_path, fake_upstream, ARCHC_MAX_CLIENT_CONNECTIONS="3")
    held = [httpx.Client(base_url=gw.url, limits=httpx.Limits(max_connections=1)) for _ in range(3)]
    try:
        for client in held:  # three established keep-alive connections: the cap
            assert client.get("/healthz").status_code == 200
        body = {"model": "openai/gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        data = json.dumps(body).encode()
        status, headers, answer = _raw(gw.port, b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                       b"content-length: %d\r\n\r\n%s" % (len(data), data))
        assert status == 503 and headers["connection"] == "close" and headers["retry-after"] == "1"
        assert json.loads(answer) == {"type": "error", "error": {
            "type": "overloaded_error", "message": "the gateway has too many open connections; retry shortly"}}
        status, _, answer = _raw(gw.port, b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        assert status == 503 and json.loads(answer)["error"]["type"] == "api_error"  # OpenAI's shape
        # Established clients go on being served, on their own connections.
        for client in held:
            r = client.post("/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]},
                            headers={"authorization": "Bearer x"})
            assert r.status_code == 200, r.text
        metrics = held[0].get("/metrics").text
        assert "archc_client_connections_rejected_total 2.0" in metrics
        assert "archc_client_connections_cap 3.0" in metrics
    finally:
        for client in held:
            client.close()
    assert settle(gw.port)[0] == 0
    assert httpx.get(gw.url + "/healthz").status_code == 200  # room again once they closed
    log = gw.logs()
    assert "client connections capped at 3 per process" in log
    assert "client connection cap reached (3 open, cap 3" in log


@pytest.fixture(scope="module")
def plain_gateway(tmp_path_factory: pytest.TempPathFactory):
    """One gateway for the HTTP-layer cases (they never reach an upstream)."""
    with FakeUpstream() as up:
        gw = Gateway(_bundle(tmp_path_factory.mktemp("h11"), up), env={"CHURN_KEY": "sk-churn"})
        gw.start()
        yield gw
        gw.close()


@pytest.mark.parametrize("request_bytes, status, fmt, message", [
    (b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n", 431, "openai",
     "request headers too large (the limit is 16384 bytes)"),
    (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(10_000)) + b"\r\n", 431,
     "anthropic", "request headers too large (the limit is 16384 bytes)"),
    (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n", 400, "anthropic",
     "malformed HTTP request: bad Content-Length"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n", 400, "openai",
     "malformed HTTP request: bad Content-Length"),
    (b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}", 400, "anthropic",
     "malformed HTTP request: conflicting Content-Length headers"),
    (b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: b\x00c\r\n\r\n", 400, "openai", "malformed HTTP request: "),
    (b"GET /v1/messages HTTP/1.1\r\nhost: x\r\nx-a: b\rc\r\n\r\n", 400, "anthropic", "malformed HTTP request: "),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64, 400, "openai", "malformed HTTP request: "),
])
def test_http_layer_rejections_answer_json_in_the_path_format(plain_gateway, request_bytes, status, fmt, message):
    gw = plain_gateway
    got, headers, body = _raw(gw.port, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json" and int(headers["content-length"]) == len(body)
    answer = json.loads(body)
    if fmt == "anthropic":
        assert answer["type"] == "error" and answer["error"]["type"] in ("invalid_request_error", "request_too_large")
        text = answer["error"]["message"]
    else:
        assert answer["error"]["type"] == "invalid_request_error" and answer["error"]["param"] is None
        text = answer["error"]["message"]
    assert text.startswith(message) and len(text) > len("malformed HTTP request: ")
    assert close_wait(gw.port) == 0 or settle(gw.port)[0] == 0
