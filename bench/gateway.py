"""Gateway overhead: req/s and p50/p99 through `archc serve` vs straight to a fake upstream (and LiteLLM).

The gateway runs pinned to CPU 0 (`taskset -c 0`); the fake upstream and the load generator (wrk,
from Debian's packages) share CPU 1. Cells: concurrency 1 and 32, streamed and not, routing off,
same-format passthrough (OpenAI chat -> OpenAI-format upstream), archc at --log-level warning (no
access log; LiteLLM runs with LITELLM_LOG=ERROR). Optionally: the same requests through LiteLLM
proxy on the same harness, archc over httpx's transports (--httpx), archc with its access log on
(--access-log), Anthropic Messages requests translated to the OpenAI upstream (--anthropic; with
--ccr, claude-code-router's on the same harness), and OpenAI Responses requests translated to chat
and passed through to the upstream's Responses endpoint (--responses).

    python bench/gateway.py [--duration 5] [--litellm /tmp/litellm-venv/bin/litellm] [--ccr /tmp/ccr/node_modules/.bin/ccr]
                            [--httpx] [--anthropic] [--responses] [--access-log] [--clients] [--out FILE.json]
    python bench/gateway.py --body-sizes 40000,400000,1000000      # added ms per body size, this tree
    python bench/gateway.py --ab cf4b00e,HEAD [--passes 4] [--body-sizes ...]   # two trees, alternating passes

The fake upstream (``--serve-upstream PORT``) is a minimal asyncio HTTP/1.1 server that answers
instantly (a chat.completion, or an SSE stream of 6 chunks when the body asks for ``stream``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

from archc.bundle import seal

ROOT = Path(__file__).resolve().parent.parent

MASTER_KEY = "sk-archc-bench-7f3c"  # LiteLLM wants a non-default master key
PROMPT = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}
# The same request in Anthropic Messages shape (what Claude Code sends), for --anthropic: the gateway
# translates it to the OpenAI-format upstream and the answer back, streamed and not.
ANTHROPIC_PROMPT = {**PROMPT, "max_tokens": 64}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
RESPONSES_PROMPT = {"model": "openai/gpt-4o", "input": "Say hello in one short sentence.", "max_output_tokens": 64}
APIS = {"openai": ("/v1/chat/completions", {}, PROMPT), "anthropic": ("/v1/messages", ANTHROPIC_HEADERS, ANTHROPIC_PROMPT),
        # Anthropic Messages to an Anthropic-format upstream: the passthrough Claude Code takes to Anthropic
        "anthropic-pass": ("/v1/messages", ANTHROPIC_HEADERS, {**ANTHROPIC_PROMPT, "model": "anthropic/claude"}),
        # the OpenAI Responses API (Codex, client.responses), translated to the chat upstream
        "responses": ("/v1/responses", {}, RESPONSES_PROMPT),
        # ... and passed through to a provider with a Responses endpoint (OpenAI's own API)
        "responses-pass": ("/v1/responses", {}, {**RESPONSES_PROMPT, "model": "openai/gpt-4o-r"})}
# What "direct" means for each API in the body sweep: the same body straight to the fake upstream.
DIRECT_PATH = {"openai": "/v1/chat/completions", "anthropic": "/v1/chat/completions", "anthropic-pass": "/v1/messages",
               "responses": "/v1/chat/completions", "responses-pass": "/v1/responses"}

# -- the fake upstream ----------------------------------------------------------------------------

_COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! Nice to meet you."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21},
}, separators=(",", ":")).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


_EVENTS = b"".join([_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hello!"}),
                    _chunk({"content": " Nice to"}), _chunk({"content": " meet you."}), _chunk({}, "stop"),
                    _chunk({}, usage={"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}), b"data: [DONE]\n\n"])
_STREAM = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_EVENTS), _EVENTS)
RESPONSE_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_COMPLETION), _COMPLETION)
RESPONSE_SSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + _STREAM


# The same answer in Anthropic Messages shape, for /v1/messages (the messages-passthrough rows).
_MESSAGE = json.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "end_turn",
    "stop_sequence": None, "content": [{"type": "text", "text": "Hello! Nice to meet you."}],
    "usage": {"input_tokens": 14, "output_tokens": 7},
}, separators=(",", ":")).encode()


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data, separators=(",", ":")).encode())


_A_EVENTS = b"".join([
    _event("message_start", {"type": "message_start", "message": {**json.loads(_MESSAGE), "content": [], "stop_reason": None,
                                                                  "usage": {"input_tokens": 14, "output_tokens": 1}}}),
    _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    *[_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
      for t in ("Hello!", " Nice to", " meet you.")],
    _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": 7}}),
    _event("message_stop", {"type": "message_stop"}),
])
A_RESPONSE_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
A_RESPONSE_SSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                  + b"%x\r\n%s\r\n0\r\n\r\n" % (len(_A_EVENTS), _A_EVENTS))


# The same answer as an OpenAI Responses object and event stream, for /v1/responses (LiteLLM's
# /v1/responses calls an openai/ model's Responses API; archc's Responses rows translate to chat).
_R_TEXT = {"type": "output_text", "text": "Hello! Nice to meet you.", "annotations": []}
_R_ITEM = {"type": "message", "id": "msg_bench", "status": "completed", "role": "assistant", "content": [_R_TEXT]}
_R_USAGE = {"input_tokens": 14, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 21}
_R_BASE = {"id": "resp_bench", "object": "response", "created_at": 1700000000, "model": "gpt-4o", "error": None,
           "incomplete_details": None, "instructions": None, "max_output_tokens": None, "parallel_tool_calls": True,
           "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
           "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
           "user": None, "metadata": {}}
_RESPONSE = json.dumps({**_R_BASE, "status": "completed", "output": [_R_ITEM], "usage": _R_USAGE}, separators=(",", ":")).encode()


def _r_events() -> bytes:
    where = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": {**_R_BASE, "status": "in_progress", "output": [], "usage": None}}),
        ("response.in_progress", {"response": {**_R_BASE, "status": "in_progress", "output": [], "usage": None}}),
        ("response.output_item.added", {"output_index": 0, "item": {**_R_ITEM, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {**where, "part": {**_R_TEXT, "text": ""}}),
        *[("response.output_text.delta", {**where, "delta": t, "logprobs": []}) for t in ("Hello!", " Nice to", " meet you.")],
        ("response.output_text.done", {**where, "text": _R_TEXT["text"], "logprobs": []}),
        ("response.content_part.done", {**where, "part": _R_TEXT}),
        ("response.output_item.done", {"output_index": 0, "item": _R_ITEM}),
        ("response.completed", {"response": json.loads(_RESPONSE)}),
    ]
    return b"".join(_event(name, {"type": name, "sequence_number": i, **data}) for i, (name, data) in enumerate(events))


_R_EVENTS = _r_events()
R_RESPONSE_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_RESPONSE), _RESPONSE)
R_RESPONSE_SSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                  + b"%x\r\n%s\r\n0\r\n\r\n" % (len(_R_EVENTS), _R_EVENTS))


# What Arch-Router on a vLLM/Ollama server answers (bench/remote_router.py).
_ROUTER_ANSWER = json.dumps({
    "id": "chatcmpl-router", "object": "chat.completion", "created": 1700000000, "model": "arch-router",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"route": "code"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 300, "completion_tokens": 7, "total_tokens": 307}}, separators=(",", ":")).encode()
ROUTER_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_ROUTER_ANSWER), _ROUTER_ANSWER)


class _UpstreamProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()  # bodies up to a few MB (--body-sizes): no quadratic concatenation
        self.need: int | None = None  # bytes of the current request (head + body), once its head is in
        self.head = b""
        self.body_at = 0

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need is None:  # the head, found once per request (a big body arrives in many reads)
                head_end = self.buf.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                self.head = bytes(self.buf[:head_end]).lower()
                m = re.search(rb"content-length:\s*(\d+)", self.head)
                self.need = head_end + 4 + (int(m.group(1)) if m else 0)
                self.body_at = head_end + 4
            end = self.need
            if len(self.buf) < end:
                return
            head, body = self.head, bytes(self.buf[self.body_at:end])
            del self.buf[:end]
            self.need = None
            stream = re.search(rb'"stream"\s*:\s*true', body[:256] + body[-256:]) is not None
            target = head.split(b" ", 2)[1]
            if target.startswith(b"/router/"):  # the router's server (bench/remote_router.py): it names a route at once
                self.transport.write(ROUTER_JSON)  # type: ignore[attr-defined]
            elif target.endswith(b"/messages"):
                self.transport.write(A_RESPONSE_SSE if stream else A_RESPONSE_JSON)  # type: ignore[attr-defined]
            elif target.endswith(b"/responses"):
                self.transport.write(R_RESPONSE_SSE if stream else R_RESPONSE_JSON)  # type: ignore[attr-defined]
            else:
                self.transport.write(RESPONSE_SSE if stream else RESPONSE_JSON)  # type: ignore[attr-defined]


def serve_upstream(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_UpstreamProtocol, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# -- bare hypercorn apps (--clients): what the server and each upstream client cost alone ---------


def serve_bare(mode: str, port: int, upstream: str) -> None:
    """hypercorn (uvloop) with a raw ASGI app: ``constant`` answers a fixed body; ``aiohttp`` and
    ``h1`` forward the body to ``upstream`` with aiohttp's client or runtime/upstream/http1.py and answer
    what came back. No Starlette, no archc: the floor each part sets."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sys.path.insert(0, str(ROOT))
    from runtime.upstream import http1

    url = upstream + "/v1/chat/completions"
    state: dict[str, Any] = {}

    async def forward(body: bytes) -> bytes:
        if mode == "aiohttp":
            if "session" not in state:
                state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            async with state["session"].post(url, data=body, headers={"content-type": "application/json"}) as r:
                return await r.read()
        if "pool" not in state:
            state["pool"] = http1.Pool()
            state["endpoint"], state["headers"] = http1.Endpoint(url), http1.header_block([("content-type", "application/json")])
        return await (await state["pool"].post(state["endpoint"], state["headers"], body)).read()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = bytearray(), True
        while more:  # a bytearray: appending to bytes copies the whole body for every 64 KB chunk
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        out = _COMPLETION if mode == "constant" else await forward(bytes(body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]})
        await send({"type": "http.response.body", "body": out})

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    uvloop.run(serve(app, config))  # type: ignore[arg-type]


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def start(cmd: list[str], cpu: int, env: dict[str, str] | None = None, log: Path | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True, cwd=cwd)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- load -----------------------------------------------------------------------------------------

_LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def wrk(url: str, body: dict[str, Any], concurrency: int, duration: float, headers: dict[str, str], folder: Path) -> dict[str, Any]:
    script = folder / "post.lua"
    lua_headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script.write_text(_LUA.format(body=json.dumps(json.dumps(body)), headers=lua_headers))
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    return _parse_wrk(out)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = {p: re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M) for p in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": _ms(*lat["50"].groups()) if lat["50"] else None,
        "p99_ms": _ms(*lat["99"].groups()) if lat["99"] else None,
        "requests": int(total.group(1)) if total else 0,
        "errors": (int(errors.group(1)) if errors else 0) + (sum(map(int, sock.groups())) if sock else 0),
    }


def check(url: str, headers: dict[str, str], stream: bool, prompt: dict[str, Any]) -> None:
    """One request per target before the load: the answer must be right, not just fast."""
    r = httpx.post(url, json={**prompt, "stream": stream}, headers=headers, timeout=30)
    r.raise_for_status()
    text = r.text
    anthropic = url.endswith("/v1/messages")
    responses = url.endswith("/v1/responses")
    if stream:
        pieces = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
        if responses:
            content = "".join(p["delta"] for p in pieces if p.get("type") == "response.output_text.delta")
        elif anthropic:
            content = "".join(p["delta"].get("text", "") for p in pieces if p.get("type") == "content_block_delta")
        else:
            content = "".join((c["choices"][0]["delta"].get("content") or "") for c in pieces if c.get("choices"))
    else:
        try:
            answer = r.json()
            if responses:
                content = "".join(c["text"] for item in answer["output"] if item["type"] == "message" for c in item["content"])
            elif anthropic:
                content = "".join(b.get("text", "") for b in answer["content"])
            else:
                content = answer["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RuntimeError(f"{url} answered {text[:300]!r}") from None
    if content != "Hello! Nice to meet you.":
        raise RuntimeError(f"{url} answered {content!r}")


# -- main -----------------------------------------------------------------------------------------


def run_target(name: str, url: str, headers: dict[str, str], args: argparse.Namespace, folder: Path,
               concurrencies: list[int], prompt: dict[str, Any] = PROMPT, streams: tuple[bool, ...] = (False, True)) -> list[dict[str, Any]]:
    rows = []
    for stream in streams:
        check(url, headers, stream, prompt)
        body = {**prompt, "stream": stream}
        for c in concurrencies:
            wrk(url, body, c, 1, headers, folder)  # warm-up
            result = wrk(url, body, c, args.duration, headers, folder)
            row = {"target": name, "stream": stream, "concurrency": c, **result}
            rows.append(row)
            print(f"  {name:<20} {'stream' if stream else 'json':<6} c={c:<3} {result['rps']:>9.0f} req/s  "
                  f"p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  errors {result['errors']}", flush=True)
    return rows


def _bundle(folder: Path, upstream: str, responses: bool = False) -> Path:
    """``responses``: also ``openai/gpt-4o-r``, with a Responses endpoint (a bundle field trees before
    the Responses passthrough refuse: only when a Responses-passthrough row asks for it)."""
    # The listener's 30 s timeout is what archgw configs carry: each request runs under its deadline.
    listener = {"name": "llm", "kind": "model", "address": "127.0.0.1", "port": 12000, "timeout_ms": 30000}
    providers = [{
        "name": "openai/gpt-4o", "provider": "openai", "model": "gpt-4o", "wire": "openai_chat",
        "endpoint": upstream + "/v1/chat/completions", "auth": "bearer", "key_env": "BENCH_OPENAI_KEY", "default": True}, {
        "name": "anthropic/claude", "provider": "anthropic", "model": "claude", "wire": "anthropic_messages",
        "endpoint": upstream + "/v1/messages", "auth": "x-api-key", "key_env": "BENCH_OPENAI_KEY", "default": False}]
    if responses:
        providers.append({**providers[0], "name": "openai/gpt-4o-r", "default": False,
                          "responses_endpoint": upstream + "/v1/responses"})
    bundle = seal({"source": {"path": "bench"}, "listeners": [listener], "providers": providers,
                   "aliases": [], "routes": [], "default_model": "openai/gpt-4o", "routing": {}, "router": None})
    path = folder / "bundle.json"
    path.write_bytes(bundle.to_bytes())
    return path


def _litellm_config(folder: Path, upstream: str) -> Path:
    path = folder / "litellm.yaml"
    path.write_text(f"""model_list:
  - model_name: openai/gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream}/v1
      api_key: sk-fake-upstream
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  drop_params: true
""")
    return path


def _ccr_home(folder: Path, upstream: str, port: int) -> Path:
    """A HOME for claude-code-router: its config (~/.claude-code-router/config.json) routes every request
    to the fake upstream's chat endpoint, logging off (as archc runs at --log-level warning)."""
    home = folder / "ccr-home"
    (home / ".claude-code-router").mkdir(parents=True, exist_ok=True)
    config = {"LOG": False, "LOG_LEVEL": "fatal", "HOST": "127.0.0.1", "PORT": port, "API_TIMEOUT_MS": 30000,
              "Providers": [{"name": "bench", "api_base_url": upstream + "/v1/chat/completions", "api_key": "sk-fake",
                             "models": ["gpt-4o"]}],
              "Router": {"default": "bench,gpt-4o"}}
    (home / ".claude-code-router" / "config.json").write_text(json.dumps(config))
    return home


def table(rows: list[dict[str, Any]]) -> str:
    direct = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "direct"}
    lines = ["| target | mode | c | req/s | p50 ms | p99 ms | added p50 ms | errors |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = direct.get((r["stream"], r["concurrency"]))
        added = f"{r['p50_ms'] - base['p50_ms']:.3f}" if base and r["target"] != "direct" else "-"
        lines.append(f"| {r['target']} | {'stream' if r['stream'] else 'json'} | {r['concurrency']} | {r['rps']:.0f} | "
                     f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {added} | {r['errors']} |")
    return "\n".join(lines)


# -- body sizes and A/B ------------------------------------------------------------------------------


def sized(prompt: dict[str, Any], size: int, anthropic: bool) -> dict[str, Any]:
    """``prompt`` grown to about ``size`` bytes the way an agent's history grows: alternating turns of
    about 2 KB (Anthropic: text blocks), ending with the user's question."""
    turn = ("Here is the file you asked for, with the change applied as discussed. " * 30)[:2000]
    messages: list[dict[str, Any]] = []
    total = len(json.dumps(prompt))
    while total < size:
        role = "user" if len(messages) % 2 == 0 else "assistant"
        msg: dict[str, Any] = {"role": role, "content": [{"type": "text", "text": turn}] if anthropic else turn}
        messages.append(msg)
        total += len(json.dumps(msg)) + 1
    if messages and messages[-1]["role"] == "user":
        messages.append({"role": "assistant", "content": "ok"})
    return {**prompt, "messages": messages + list(prompt["messages"])}


def tree_of(ref: str, folder: Path) -> Path:
    """A source tree to run: a folder as given, or a git commit-ish exported with ``git archive``."""
    if Path(ref).is_dir():
        return Path(ref).resolve()
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True,
                         text=True, check=True).stdout.strip()
    out = folder / f"tree-{sha[:10]}"
    if not out.exists():
        out.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def start_gateway(tree: Path, bundle: Path, folder: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    """`archc serve` from ``tree`` (its own archc/ and runtime/ first on the path), pinned to CPU 0."""
    port = free_port()
    proc = start([sys.executable, "-m", "archc", "serve", str(bundle), "--port", str(port), "--log-level", "warning"], cpu=0,
                 env={"BENCH_OPENAI_KEY": "sk-fake", "PYTHONPATH": str(tree)}, log=folder / f"{name}.log", cwd=tree)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 60)
    except RuntimeError as exc:  # say why (an old tree's missing dependency, a bundle it refuses), not only that
        stop(proc)
        tail = (folder / f"{name}.log").read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"{tree}: {exc}; its log ends:\n" + "\n".join(tail)) from None
    return proc, port


Cell = tuple[str, bool, int, int]  # api, stream, concurrency, body size (0: the short prompt)


def cells_for(args: argparse.Namespace) -> list[Cell]:
    apis = args.apis.split(",")
    out: list[Cell] = [(api, stream, c, 0) for api in apis for stream in (False, True)
                       for c in (int(x) for x in args.concurrency.split(","))]
    sizes = [int(x) for x in args.body_sizes.split(",")] if args.body_sizes else []
    return out + [(api, False, 1, size) for api in apis for size in sizes]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat): what a request costs, whatever
    else the machine is doing (time stolen by other guests or processes is not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cells(base: str, cells: list[Cell], args: argparse.Namespace, folder: Path, direct: bool = False,
              pid: int | None = None) -> dict[Cell, dict[str, Any]]:
    """wrk over each cell; with ``pid``, each result also has ``cpu_us``: the process's CPU per request."""
    results = {}
    for api, stream, c, size in cells:
        path, headers, prompt = APIS[api]
        if direct:
            path = DIRECT_PATH[api]
            prompt = PROMPT if api == "responses" else prompt
            prompt = {**prompt, "model": "gpt-4o"} if api != "anthropic-pass" else prompt
        anthropic_body = api != "openai" and not (direct and api == "anthropic")
        body = sized(prompt, size, anthropic_body) if size else prompt
        if direct and api == "anthropic" and size:  # the translated rows' upstream gets OpenAI chat
            body = sized({**PROMPT, "model": "gpt-4o"}, size, False)
        if not size:
            check(base + path, headers, stream, prompt)
        wrk(base + path, {**body, "stream": stream}, c, 1, headers, folder)  # warm-up
        before = cpu_seconds(pid) if pid else 0.0
        result = wrk(base + path, {**body, "stream": stream}, c, args.duration, headers, folder)
        if pid and result["requests"]:
            result["cpu_us"] = (cpu_seconds(pid) - before) * 1e6 / result["requests"]
        results[(api, stream, c, size)] = result
    return results


def body_sweep(args: argparse.Namespace, upstream: str, folder: Path) -> list[str]:
    """This tree only: added p50 ms over direct for each API and body size (c=1, json)."""
    cells = [cell for cell in cells_for(args) if cell[3]]
    direct = run_cells(upstream, cells, args, folder, direct=True)
    proc, port = start_gateway(ROOT, _bundle(folder, upstream, "responses-pass" in args.apis), folder, "sweep")
    try:
        got = run_cells(f"http://127.0.0.1:{port}", cells, args, folder)
    finally:
        stop(proc)
    lines = ["| api | body | direct p50 ms | archc p50 ms | added ms |", "|---|---|---|---|---|"]
    for cell in cells:
        d, g = direct[cell]["p50_ms"], got[cell]["p50_ms"]
        lines.append(f"| {cell[0]} | {cell[3] // 1000} KB | {d:.2f} | {g:.2f} | {g - d:.2f} |")
    return lines


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ab(args: argparse.Namespace, upstream: str, folder: Path) -> list[str]:
    """Two trees, alternating passes (A B, B A, ...): req/s for the short-prompt cells, added p50 ms
    over direct for the body-size cells; medians and ranges side by side."""
    refs = args.ab.split(",")
    if len(refs) != 2:
        raise SystemExit("--ab wants two refs: A,B (git commits or source folders)")
    trees = [tree_of(ref, folder) for ref in refs]
    bundle = _bundle(folder, upstream, "responses-pass" in args.apis)
    cells = cells_for(args)
    sized_cells = [cell for cell in cells if cell[3]]
    samples: dict[tuple[int, Cell], list[float]] = {}
    cpu: dict[tuple[int, Cell], list[float]] = {}  # the gateway's CPU µs per request: steady when the VM is not
    for n in range(args.passes):
        order = (0, 1) if n % 2 == 0 else (1, 0)
        direct = run_cells(upstream, sized_cells, args, folder, direct=True) if sized_cells else {}
        for which in order:
            proc, port = start_gateway(trees[which], bundle, folder, f"ab-{which}-{n}")
            try:
                got = run_cells(f"http://127.0.0.1:{port}", cells, args, folder, pid=proc.pid)
            finally:
                stop(proc)
            for cell, r in got.items():
                value = r["p50_ms"] - direct[cell]["p50_ms"] if cell[3] else r["rps"]
                samples.setdefault((which, cell), []).append(value)
                cpu.setdefault((which, cell), []).append(r.get("cpu_us", 0.0))
            print(f"pass {n + 1}/{args.passes}: {refs[which]} done", flush=True)
    lines = [f"A = {refs[0]}, B = {refs[1]}; {args.passes} alternating passes of {args.duration:g} s per cell; "
             "req/s (short prompt) or added p50 ms over direct (body sizes, c=1 json), and the gateway's CPU µs per "
             "request: median [min-max]",
             "| api | mode | c | body | A | B | B vs A | A cpu µs/req | B cpu µs/req | B vs A |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cols(table: dict[tuple[int, Cell], list[float]], cell: Cell, digits: int) -> str:
        a, b = table[(0, cell)], table[(1, cell)]
        ma, mb = _median(a), _median(b)
        change = (mb - ma) / ma * 100 if ma else 0.0
        return (f"{ma:.{digits}f} [{min(a):.{digits}f}-{max(a):.{digits}f}] | {mb:.{digits}f} [{min(b):.{digits}f}-"
                f"{max(b):.{digits}f}] | {change:+.1f}%")

    for cell in cells:
        body = f"{cell[3] // 1000} KB" if cell[3] else "short"
        lines.append(f"| {cell[0]} | {'stream' if cell[1] else 'json'} | {cell[2]} | {body} | "
                     f"{cols(samples, cell, 2 if cell[3] else 0)} | {cols(cpu, cell, 0)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (after a 1 s warm-up)")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--litellm", help="path to LiteLLM's `litellm` command (its own venv)")
    parser.add_argument("--httpx", action="store_true",
                        help="also run archc through the httpx API over httpx-aiohttp, and over plain httpx's transport")
    parser.add_argument("--anthropic", action="store_true",
                        help="also send Anthropic Messages requests (POST /v1/messages, translated to the OpenAI-format upstream)")
    parser.add_argument("--responses", action="store_true",
                        help="also send OpenAI Responses requests (POST /v1/responses), translated to the OpenAI-format upstream "
                             "and passed through to its Responses endpoint; with --litellm, LiteLLM's /v1/responses too")
    parser.add_argument("--ccr", metavar="CCR_JS", help="claude-code-router's ccr script (npm @musistudio/claude-code-router: "
                                                         "node_modules/.bin/ccr): its /v1/messages, translated to the OpenAI-format upstream")
    parser.add_argument("--access-log", action="store_true", help="also run archc at log level info (access log on, to a file)")
    parser.add_argument("--only-anthropic", action="store_true", help="the Anthropic rows only (plus direct)")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--clients", action="store_true",
                        help="also run bare hypercorn apps (constant answer; forwarding over aiohttp; over runtime/upstream/http1.py)")
    parser.add_argument("--ab", metavar="A,B", help="compare two trees (git commits or folders) in alternating passes")
    parser.add_argument("--passes", type=int, default=4, help="--ab: passes per tree (alternating order)")
    parser.add_argument("--apis", default="openai,anthropic,anthropic-pass",
                        help="--ab / --body-sizes: openai (chat passthrough), anthropic (messages translated), "
                             "anthropic-pass (messages passthrough), responses (translated to chat), responses-pass "
                             "(Responses passthrough)")
    parser.add_argument("--body-sizes", default="", help="body sizes in bytes (e.g. 40000,400000,1000000): added p50 ms "
                                                          "over direct at c=1, json")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", nargs=3, metavar=("MODE", "PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    if args.serve_bare:
        serve_bare(args.serve_bare[0], int(args.serve_bare[1]), args.serve_bare[2])
        return 0
    if not shutil.which("wrk") or not shutil.which("taskset"):
        print("bench/gateway.py needs wrk and taskset (apt-get install wrk util-linux)", file=sys.stderr)
        return 2
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as tmp:
        folder = Path(tmp)
        try:
            up_port = free_port()
            upstream = f"http://127.0.0.1:{up_port}"
            procs.append(start([sys.executable, __file__, "--serve-upstream", str(up_port)], cpu=1))
            wait_http(upstream + "/", 20)
            if args.ab:
                print("\n".join(ab(args, upstream, folder)))
                return 0
            if args.body_sizes:
                report = body_sweep(args, upstream, folder)
                print("\n".join(report))
                return 0
            print("direct to the fake upstream", flush=True)
            rows += run_target("direct", upstream + "/v1/chat/completions", {}, args, folder, concurrencies)
            if args.responses:  # the Responses passthrough rows' own floor (a Responses answer is larger)
                rows += run_target("direct-responses", upstream + "/v1/responses", {}, args, folder, concurrencies,
                                   {**RESPONSES_PROMPT, "model": "gpt-4o"})

            for mode in ("constant", "aiohttp", "h1") if args.clients else ():
                port = free_port()
                bare = start([sys.executable, __file__, "--serve-bare", mode, str(port), upstream], cpu=0, log=folder / f"bare-{mode}.log")
                procs.append(bare)
                wait_http(f"http://127.0.0.1:{port}/", 30)
                print(f"bare hypercorn app, {mode} (pinned to CPU 0)", flush=True)
                rows += run_target(f"bare-{mode}", f"http://127.0.0.1:{port}/v1/chat/completions", {}, args, folder,
                                   concurrencies, streams=(False,))
                stop(bare)
            quiet = ["--log-level", "warning"]  # no access log: the gateway's own cost
            anthropic = args.anthropic or args.only_anthropic
            serve = [sys.executable, "-m", "archc", "serve"]
            variants = [("archc-anthropic", serve, quiet, "anthropic")] if anthropic else []
            if not args.only_anthropic:
                variants.append(("archc", serve, quiet, "openai"))
                if args.responses:
                    variants += [("archc-responses", serve, quiet, "responses"), ("archc-responses-pass", serve, quiet, "responses-pass")]
                if args.access_log:  # one JSON access-log line per request, to a file
                    variants.append(("archc-accesslog", serve, ["--log-level", "info"], "openai"))
                if args.httpx:  # the same gateway over another client (bench/transports.py)
                    transports = [sys.executable, str(Path(__file__).with_name("transports.py"))]
                    variants += [("archc-httpx-aiohttp", [*transports, "httpx-aiohttp"], quiet, "openai"),
                                 ("archc-httpx", [*transports, "httpx"], quiet, "openai")]
            for name, command, extra, api in variants:
                path, headers, prompt = APIS[api]
                port = free_port()
                gw = start([*command, str(_bundle(folder, upstream, args.responses)), "--port", str(port), *extra], cpu=0,
                           env={"BENCH_OPENAI_KEY": "sk-fake"}, log=folder / f"{name}.log")
                procs.append(gw)
                wait_http(f"http://127.0.0.1:{port}/readyz", 60)
                print(f"{name} (pinned to CPU 0)", flush=True)
                rows += run_target(name, f"http://127.0.0.1:{port}{path}", headers, args, folder, concurrencies, prompt)
                stop(gw)

            if args.ccr:  # claude-code-router: Anthropic Messages in, the OpenAI-format upstream out (what archc-anthropic does)
                port = free_port()
                home = _ccr_home(folder, upstream, port)
                ccr = start(["node", args.ccr, "start"], cpu=0, env={"HOME": str(home)}, log=folder / "ccr.log")
                procs.append(ccr)
                wait_http(f"http://127.0.0.1:{port}/", 60)
                print("claude-code-router (pinned to CPU 0)", flush=True)
                rows += run_target("ccr-anthropic", f"http://127.0.0.1:{port}/v1/messages", ANTHROPIC_HEADERS, args, folder,
                                   concurrencies, ANTHROPIC_PROMPT)
                stop(ccr)

            if args.litellm:
                port = free_port()
                lite = start([args.litellm, "--config", str(_litellm_config(folder, upstream)), "--port", str(port),
                              "--host", "127.0.0.1", "--num_workers", "1"], cpu=0,
                             env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, log=folder / "litellm.log")
                procs.append(lite)
                auth = {"Authorization": f"Bearer {MASTER_KEY}"}
                wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180)
                print("litellm (pinned to CPU 0)", flush=True)
                if not args.only_anthropic:
                    rows += run_target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", auth, args, folder, concurrencies)
                if args.responses:
                    try:
                        rows += run_target("litellm-responses", f"http://127.0.0.1:{port}/v1/responses", auth, args, folder,
                                           concurrencies, RESPONSES_PROMPT)
                    except (RuntimeError, httpx.HTTPError) as exc:  # say why, keep the rows
                        print(f"  litellm-responses skipped: {exc}", flush=True)
                if anthropic:
                    try:
                        rows += run_target("litellm-anthropic", f"http://127.0.0.1:{port}/v1/messages", {**auth, **ANTHROPIC_HEADERS},
                                           args, folder, concurrencies, ANTHROPIC_PROMPT)
                    except RuntimeError as exc:  # its /v1/messages bridge is optional here: say why, keep the rows
                        print(f"  litellm-anthropic skipped: {exc}", flush=True)
                stop(lite)
        finally:
            for p in procs:
                stop(p)
    print()
    print(table(rows))
    archc = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "archc"}
    lite = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "litellm"}
    for key, r in lite.items():
        if key in archc and r["rps"]:
            print(f"archc / litellm ({'stream' if key[0] else 'json'}, c={key[1]}): {archc[key]['rps'] / r['rps']:.1f}x req/s")
    archc_r = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "archc-responses"}
    for key, r in {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "litellm-responses"}.items():
        if key in archc_r and r["rps"]:
            print(f"archc / litellm, Responses ({'stream' if key[0] else 'json'}, c={key[1]}): "
                  f"{archc_r[key]['rps'] / r['rps']:.1f}x req/s")
    archc_a = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "archc-anthropic"}
    for key, r in {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "litellm-anthropic"}.items():
        if key in archc_a and r["rps"]:
            print(f"archc / litellm, Anthropic Messages ({'stream' if key[0] else 'json'}, c={key[1]}): "
                  f"{archc_a[key]['rps'] / r['rps']:.1f}x req/s")
    for key, r in {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "ccr-anthropic"}.items():
        if key in archc_a and r["rps"]:
            print(f"archc / claude-code-router, Anthropic Messages ({'stream' if key[0] else 'json'}, c={key[1]}): "
                  f"{archc_a[key]['rps'] / r['rps']:.1f}x req/s")
    passed = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "archc-responses-pass"}
    for key, r in passed.items():
        if key in archc and archc[key]["rps"]:
            print(f"Responses passthrough / chat passthrough ({'stream' if key[0] else 'json'}, c={key[1]}): "
                  f"{r['rps'] / archc[key]['rps'] * 100:.0f}% req/s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
