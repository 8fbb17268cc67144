"""A fake upstream LLM provider: an HTTP server on 127.0.0.1 speaking the providers' real wire protocols.

Test support (may import aiohttp). It answers OpenAI chat (``.../chat/completions``, Azure
deployment paths included), OpenAI Responses (``.../responses``: the ``openai_*`` reply builders
answer in that API there) and Anthropic messages (``.../messages``), streamed or not as the
request asks, from a per-test script, and records every request it received (method, path,
query, headers, JSON body) and every streamed response the client abandoned.

    with FakeUpstream() as up:
        up.script(openai_tool_call("Bash", {"command": "echo hi"}), openai_text("done"))
        ... point a bundle's endpoint at up.url + "/v1/chat/completions" ...
        assert up.requests[1].body["messages"][-1]["role"] == "tool"

A reply is a function ``(fmt, body) -> Response``; the helpers below build the common ones.
When the script is empty, a request gets ``default`` (a short text in the request's format),
which also answers side requests (Claude Code's title generation, quota probes).
Run as a program (``python -m tests.support.fake_upstream --port N``) for benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from aiohttp import web

OPENAI = "openai_chat"
ANTHROPIC = "anthropic_messages"
RESPONSES = "openai_responses"


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived (pacing tests)

    @property
    def fmt(self) -> str:
        path = self.path.rstrip("/")
        return ANTHROPIC if path.endswith("/messages") else RESPONSES if path.endswith("/responses") else OPENAI


@dataclass
class Response:
    """What the fake sends: a status and JSON body, or an SSE stream of (event, data) pairs."""

    status: int = 200
    json: Any = None
    events: list[tuple[str | None, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Stream: pause this long between events; hold the stream open after the last one until the
    # client goes away (used to prove client disconnects reach the upstream).
    delay_s: float = 0.0
    hold_open: bool = False
    # Bytes sent as they are, with this content type (an upstream that lies about what it sends).
    raw: bytes | None = None
    content_type: str = "application/json"


Reply = Callable[[str, Any], Response]


# -- reply builders ------------------------------------------------------------------------------


def _sse(events: Iterable[tuple[str | None, Any]]) -> list[tuple[str | None, str]]:
    return [(e, d if isinstance(d, str) else json.dumps(d)) for e, d in events]


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def _openai(body: Any, message: dict[str, Any], finish: str, usage: dict[str, int], pieces: list[dict[str, Any]]) -> Response:
    model = body.get("model", "fake") if isinstance(body, dict) else "fake"
    if isinstance(body, dict) and body.get("stream"):
        events: list[tuple[str | None, Any]] = [(None, _chunk(model, {"role": "assistant", "content": ""}))]
        events += [(None, _chunk(model, p)) for p in pieces]
        events.append((None, _chunk(model, {}, finish)))
        events.append((None, {**_chunk(model, {}), "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return Response(events=_sse(events))
    return Response(json={
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    })


def _split(text: str, n: int = 3) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _responses(body: Any, output: list[dict[str, Any]], usage: tuple[int, int], reasoning_tokens: int = 0) -> Response:
    """An OpenAI Responses answer holding ``output`` (whole items); streamed, the published event sequence."""
    body = body if isinstance(body, dict) else {}
    envelope = {"id": "resp_fake_" + str(time.monotonic_ns()), "object": "response", "created_at": 1700000000,
                "model": body.get("model", "fake"), "error": None, "incomplete_details": None,
                "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
                "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True), "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": body.get("tools") or [],
                "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {}}
    u = {"input_tokens": usage[0], "input_tokens_details": {"cached_tokens": 0}, "output_tokens": usage[1],
         "output_tokens_details": {"reasoning_tokens": reasoning_tokens}, "total_tokens": sum(usage)}
    done = {**envelope, "status": "completed", "output": output, "usage": u}
    if not body.get("stream"):
        return Response(json=done)
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": {**envelope, "status": "in_progress", "output": [], "usage": None}}),
        ("response.in_progress", {"response": {**envelope, "status": "in_progress", "output": [], "usage": None}})]
    for i, item in enumerate(output):
        kind = item["type"]
        opened = {**item, "status": "in_progress"}
        if kind == "message":
            opened["content"] = []
        elif kind == "function_call":
            opened["arguments"] = ""
        elif kind == "reasoning":
            opened["summary"] = []
        events.append(("response.output_item.added", {"output_index": i, "item": opened}))
        where = {"item_id": item["id"], "output_index": i}
        if kind == "message":
            for j, part in enumerate(item["content"]):
                at = {**where, "content_index": j}
                events.append(("response.content_part.added", {**at, "part": {**part, "text": ""}}))
                events += [("response.output_text.delta", {**at, "delta": d, "logprobs": []}) for d in _split(part["text"])]
                events.append(("response.output_text.done", {**at, "text": part["text"], "logprobs": []}))
                events.append(("response.content_part.done", {**at, "part": part}))
        elif kind == "function_call":
            events += [("response.function_call_arguments.delta", {**where, "delta": d}) for d in _split(item["arguments"], 4)]
            events.append(("response.function_call_arguments.done", {**where, "arguments": item["arguments"]}))
        elif kind == "reasoning":
            for j, part in enumerate(item["summary"]):
                at = {**where, "summary_index": j}
                events.append(("response.reasoning_summary_part.added", {**at, "part": {**part, "text": ""}}))
                events += [("response.reasoning_summary_text.delta", {**at, "delta": d}) for d in _split(part["text"])]
                events.append(("response.reasoning_summary_text.done", {**at, "text": part["text"]}))
                events.append(("response.reasoning_summary_part.done", {**at, "part": part}))
        events.append(("response.output_item.done", {"output_index": i, "item": item}))
    events.append(("response.completed", {"response": done}))
    # Compact, as OpenAI writes its events (the gateway reads the final one's id without parsing it then).
    return Response(events=[(name, json.dumps({"type": name, "sequence_number": n, **data}, separators=(",", ":")))
                            for n, (name, data) in enumerate(events)])


def _responses_message(text: str) -> dict[str, Any]:
    return {"type": "message", "id": "msg_fake_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def openai_text(text: str = "ok", *, reasoning: str | None = None, usage: tuple[int, int] = (11, 7)) -> Reply:
    """An OpenAI chat answer (streamed in a few deltas when asked); ``reasoning`` as ``reasoning_content``.
    At a Responses endpoint: a message item, after a reasoning item with ``reasoning`` as its summary."""

    def reply(fmt: str, body: Any) -> Response:
        if fmt == RESPONSES:
            thought = [] if reasoning is None else [
                {"type": "reasoning", "id": "rs_fake_1", "summary": [{"type": "summary_text", "text": reasoning}]}]
            return _responses(body, [*thought, _responses_message(text)], usage, reasoning_tokens=len(thought) * 5)
        u = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        pieces: list[dict[str, Any]] = []
        if reasoning is not None:
            message["reasoning_content"] = reasoning
            pieces += [{"reasoning_content": p} for p in _split(reasoning)]
        pieces += [{"content": p} for p in _split(text)]
        return _openai(body, message, "stop", u, pieces)

    return reply


def openai_tool_call(name: str, arguments: dict[str, Any], *, call_id: str = "call_fake_1", text: str | None = None) -> Reply:
    """An OpenAI chat tool call; streamed, the arguments arrive in several deltas. At a Responses
    endpoint: a ``function_call`` item (after a message with ``text``)."""

    def reply(fmt: str, body: Any) -> Response:
        args = json.dumps(arguments)
        if fmt == RESPONSES:
            call = {"type": "function_call", "id": "fc_fake_1", "status": "completed", "call_id": call_id,
                    "name": name, "arguments": args}
            return _responses(body, [*([_responses_message(text)] if text else []), call], (20, 9))
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
        message = {"role": "assistant", "content": text, "tool_calls": [call]}
        pieces: list[dict[str, Any]] = [{"content": text}] if text else []
        pieces.append({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]})
        pieces += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in _split(args, 4)]
        return _openai(body, message, "tool_calls", {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}, pieces)

    return reply


def _anthropic(body: Any, blocks: list[dict[str, Any]], stop: str, usage: tuple[int, int]) -> Response:
    model = body.get("model", "fake") if isinstance(body, dict) else "fake"
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }
    if not (isinstance(body, dict) and body.get("stream")):
        return Response(json=message)
    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": usage[0], "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(blocks):
        kind = block["type"]
        empty = {"text": {"type": "text", "text": ""}, "thinking": {"type": "thinking", "thinking": "", "signature": ""},
                 "tool_use": {**block, "input": {}}}[kind]
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": empty}))
        if kind == "text":
            deltas = [{"type": "text_delta", "text": p} for p in _split(block["text"])]
        elif kind == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _split(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _split(json.dumps(block["input"]), 4)]
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": usage[1]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return Response(events=_sse(events))


def anthropic_text(text: str = "ok", *, thinking: str | None = None, signature: str = "sig-fake", usage: tuple[int, int] = (13, 5)) -> Reply:
    """An Anthropic messages answer; ``thinking`` adds a signed thinking block first."""

    def reply(fmt: str, body: Any) -> Response:
        blocks: list[dict[str, Any]] = []
        if thinking is not None:
            blocks.append({"type": "thinking", "thinking": thinking, "signature": signature})
        blocks.append({"type": "text", "text": text})
        return _anthropic(body, blocks, "end_turn", usage)

    return reply


def anthropic_tool_use(name: str, input: dict[str, Any], *, tool_id: str = "toolu_fake_1", text: str | None = None) -> Reply:
    """An Anthropic tool_use answer; streamed, the input arrives as several ``input_json_delta``."""

    def reply(fmt: str, body: Any) -> Response:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": input})
        return _anthropic(body, blocks, "tool_use", (21, 8))

    return reply


def error(status: int, message: str = "fake upstream error", *, kind: str = "api_error",
          headers: dict[str, str] | None = None) -> Reply:
    """An error status with a body in the request's format (and ``headers``, e.g. retry-after)."""

    def reply(fmt: str, body: Any) -> Response:
        if fmt == ANTHROPIC:
            return Response(status=status, json={"type": "error", "error": {"type": kind, "message": message}},
                            headers=dict(headers or {}))
        return Response(status=status, json={"error": {"message": message, "type": kind, "param": None, "code": None}},
                        headers=dict(headers or {}))

    return reply


def stalling(reply: Reply, *, keep: int = 2) -> Reply:
    """Stream only the first ``keep`` events of ``reply``, then hold the connection open."""

    def wrapped(fmt: str, body: Any) -> Response:
        r = reply(fmt, body)
        assert r.events is not None, "stalling() needs a streamed request"
        return Response(events=r.events[:keep], hold_open=True)

    return wrapped


LIES = ("json_for_stream", "sse_for_nonstream", "truncated", "not_a_completion", "html")


def lying(kind: str) -> Reply:
    """A 200 that is not the answer the request asked for, in the request's format:
    ``json_for_stream`` (a whole JSON answer to a streamed request), ``sse_for_nonstream`` (an event
    stream to a non-streamed one), ``truncated`` (the first half of a stream: no finish, no ``[DONE]`` /
    ``message_stop``), ``not_a_completion`` (``{"foo": 1}``), ``html`` (an HTML error page)."""
    assert kind in LIES, kind

    def reply(fmt: str, body: Any) -> Response:
        streamed = bool(isinstance(body, dict) and body.get("stream"))
        if kind == "json_for_stream":
            return default_reply(fmt, {**body, "stream": False})
        if kind == "sse_for_nonstream":
            return default_reply(fmt, {**body, "stream": True})
        if kind == "truncated":
            r = default_reply(fmt, {**body, "stream": True})
            assert r.events is not None
            return Response(events=r.events[:max(2, len(r.events) // 2)])  # mid-answer: no finish, no [DONE] / message_stop
        if kind == "not_a_completion":
            return Response(json={"foo": 1}) if not streamed else Response(raw=b'{"foo": 1}')
        return Response(raw=b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>", content_type="text/html")

    return reply


def default_reply(fmt: str, body: Any) -> Response:
    return (anthropic_text("ok") if fmt == ANTHROPIC else openai_text("ok"))(fmt, body)


# -- the server ----------------------------------------------------------------------------------


class FakeUpstream:
    """The server, run on its own event loop in a background thread (tests drive it synchronously)."""

    def __init__(self, *, port: int = 0, default: Reply = default_reply, record: bool = True,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.ssl_context = ssl_context  # serve HTTPS (tests/runtime/upstream/test_e2e_egress.py)
        self.default = default
        self.record = record
        self.requests: list[Recorded] = []
        self.disconnects: list[str] = []  # paths of streams the client abandoned
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._disconnected = threading.Event()

    # -- scripting

    def script(self, *replies: Reply) -> "FakeUpstream":
        with self._lock:
            self._script.extend(replies)
        return self

    def reset(self) -> None:
        """Forget recorded requests, the script and disconnects (for a server shared by several tests)."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.disconnects.clear()
            self._disconnected.clear()

    def wait_disconnect(self, timeout: float = 5.0) -> bool:
        return self._disconnected.wait(timeout)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def openai_endpoint(self) -> str:
        return self.url + "/v1/chat/completions"

    def responses_endpoint(self) -> str:
        return self.url + "/v1/responses"

    def anthropic_endpoint(self) -> str:
        return self.url + "/v1/messages"

    # -- lifecycle

    def start(self) -> "FakeUpstream":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            server = site._server  # the bound socket tells us the port the OS chose
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(request.method, request.path, request.query_string, dict(request.headers), body, raw)
        if self.record:
            with self._lock:
                self.requests.append(rec)
        with self._lock:
            reply = self._script.popleft() if self._script else self.default
        if request.method != "POST":
            return web.json_response({"error": {"message": f"fake upstream: {request.method} not served"}}, status=405)
        response = reply(rec.fmt, body)
        if response.raw is not None:
            return web.Response(body=response.raw, status=response.status,
                                headers={"content-type": response.content_type, **response.headers})
        if response.events is None:
            return web.json_response(response.json, status=response.status, headers=response.headers)
        return await self._stream(request, response)

    async def _stream(self, request: web.Request, response: Response) -> web.StreamResponse:
        out = web.StreamResponse(status=response.status, headers={"content-type": "text/event-stream", **response.headers})
        await out.prepare(request)
        try:
            for event, data in response.events or []:
                head = f"event: {event}\n" if event else ""
                await out.write(f"{head}data: {data}\n\n".encode())
                if response.delay_s:
                    await asyncio.sleep(response.delay_s)
            if response.hold_open:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        raise ConnectionResetError("client went away")
                    await asyncio.sleep(0.02)
            await out.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(request.path)
            self._disconnected.set()
            raise
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake upstream (answers 'ok' in each format).")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    up = FakeUpstream(port=args.port, record=False)
    up.start()
    print(f"fake upstream on {up.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        up.stop()


if __name__ == "__main__":
    main()
