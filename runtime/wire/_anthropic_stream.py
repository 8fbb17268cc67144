"""Streamed translation between Anthropic Messages events and OpenAI chat.completion.chunk dicts.

Runtime wire stage; stdlib and `runtime.*` only. Public through `runtime.wire.anthropic_messages`.
One small state object per stream and direction; feed it parsed events, send what it returns.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import UpstreamStatus
from runtime.wire._anthropic_common import (
    FINISH_BY_STOP,
    SHAPE_ERRORS,
    STATUS_BY_ERROR_TYPE,
    STOP_BY_FINISH,
    anthropic_id_from,
    anthropic_tool_id,
    malformed,
    openai_id_from,
    usage_from_openai,
    usage_to_openai,
)
from runtime.wire.openai_chat import reasoning_of

__all__ = ["StreamFromOpenAI", "StreamToOpenAI"]


class StreamToOpenAI:
    """Anthropic upstream events -> OpenAI ``chat.completion.chunk`` dicts for an OpenAI client.

    ``model`` is the name the client asked for; ``created`` the caller's clock reading;
    ``include_usage`` mirrors the client's ``stream_options.include_usage`` (a last chunk with
    empty ``choices`` and ``usage``). Tool-call ``index`` counts tool_use blocks only. Thinking
    becomes ``reasoning_content`` deltas and a signature a ``reasoning_signature`` delta.
    An upstream ``error`` event raises UpstreamStatus (status from the error type), which the
    caller renders in the client's format; ``usage`` is readable at any time for metrics.
    """

    def __init__(self, model: str, *, created: int = 0, include_usage: bool = False, id: str | None = None) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.id = id
        self._anthropic_usage: dict[str, Any] = {}
        self._tools: dict[int, list[int]] = {}  # block index -> [tool index, argument chars sent]
        self._stop_reason: str | None = None
        self._started = False
        self._finish_sent = False
        self._usage_sent = False

    @property
    def usage(self) -> tuple[int, int]:
        """(prompt_tokens, completion_tokens) so far, counted the OpenAI way."""
        usage = usage_to_openai(self._anthropic_usage)
        return usage["prompt_tokens"], usage["completion_tokens"]

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """One upstream event (the SSE ``event:`` name and its parsed ``data``) -> chunks to send."""
        etype = data.get("type", event) if isinstance(data, dict) else event
        handler = _TO_OPENAI_HANDLERS.get(etype) if isinstance(etype, str) else None
        if handler is None:
            return []  # ping, and event types added to the API later
        try:
            return handler(self, data)
        except SHAPE_ERRORS as exc:
            raise malformed(f"a {etype} event", exc) from exc

    def finish(self) -> list[dict[str, Any]]:
        """End of the upstream stream: the finish chunk and usage chunk if not yet sent."""
        out = self._start_chunks()
        if not self._finish_sent:
            self._finish_sent = True
            out.append(self._chunk({}, FINISH_BY_STOP.get(self._stop_reason or "", "stop")))
        if self.include_usage and not self._usage_sent:
            self._usage_sent = True
            out.append(self._usage_chunk())
        return out

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def _usage_chunk(self) -> dict[str, Any]:
        chunk = self._chunk({})
        chunk["choices"] = []
        chunk["usage"] = usage_to_openai(self._anthropic_usage)
        return chunk

    def _start_chunks(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        if self.id is None:
            self.id = openai_id_from(None)
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message") or {}
        if self.id is None:
            self.id = openai_id_from(message.get("id"))
        self._merge_usage(message.get("usage"))
        return self._start_chunks()

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # message_delta usage is cumulative; its null fields mean "unchanged".
            self._anthropic_usage.update({k: v for k, v in usage.items() if v is not None})

    def _on_content_block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._start_chunks()
        block = data.get("content_block") or {}
        btype = block.get("type")
        if btype == "tool_use":
            tool_index = len(self._tools)
            self._tools[data.get("index", -1)] = [tool_index, 0]
            call = {"index": tool_index, "id": block.get("id", ""), "type": "function", "function": {"name": block.get("name", ""), "arguments": ""}}
            out.append(self._chunk({"tool_calls": [call]}))
        elif btype == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif btype == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        return out

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._start_chunks()
        delta = data.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            out.append(self._chunk({"content": delta.get("text", "")}))
        elif dtype == "input_json_delta":
            tool = self._tools.get(data.get("index", -1))
            partial = delta.get("partial_json", "")
            if tool is not None and partial:
                tool[1] += len(partial)
                out.append(self._chunk({"tool_calls": [{"index": tool[0], "function": {"arguments": partial}}]}))
        elif dtype == "thinking_delta":
            out.append(self._chunk({"reasoning_content": delta.get("thinking", "")}))
        elif dtype == "signature_delta":
            out.append(self._chunk({"reasoning_signature": delta.get("signature", "")}))
        return out  # citations_delta and later delta types are not carried

    def _on_content_block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        tool = self._tools.get(data.get("index", -1))
        if tool is not None and tool[1] == 0:
            # A tool without arguments streams no JSON; OpenAI clients json-parse "arguments".
            tool[1] = 2
            return [self._chunk({"tool_calls": [{"index": tool[0], "function": {"arguments": "{}"}}]})]
        return []

    def _on_message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._start_chunks()
        self._merge_usage(data.get("usage"))
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason:
            self._stop_reason = stop_reason
        if self._stop_reason and not self._finish_sent:
            self._finish_sent = True
            out.append(self._chunk({}, FINISH_BY_STOP.get(self._stop_reason, "stop")))
        return out

    def _on_message_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return self.finish()

    def _on_error(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        etype = error.get("type", "api_error")
        message = error.get("message") or "the upstream reported an error mid-stream"
        raise UpstreamStatus(STATUS_BY_ERROR_TYPE.get(etype, 502), f"upstream error ({etype}): {message}")


_TO_OPENAI_HANDLERS = {
    "message_start": StreamToOpenAI._on_message_start,
    "content_block_start": StreamToOpenAI._on_content_block_start,
    "content_block_delta": StreamToOpenAI._on_content_block_delta,
    "content_block_stop": StreamToOpenAI._on_content_block_stop,
    "message_delta": StreamToOpenAI._on_message_delta,
    "message_stop": StreamToOpenAI._on_message_stop,
    "error": StreamToOpenAI._on_error,
}


class _Tool:
    __slots__ = ("id", "name", "args", "sent", "block")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.args: list[str] = []
        self.sent = 0  # how many argument pieces went out
        self.block: int | None = None  # Anthropic block index once started


class StreamFromOpenAI:
    """OpenAI ``chat.completion.chunk`` dicts -> Anthropic ``(event, data)`` pairs for an Anthropic client.

    Emits ``message_start`` once, then ``content_block_start/delta/stop`` for thinking
    (``reasoning_content``), text and one tool_use block per tool-call index, closing the open
    block when the kind changes, then ``message_delta`` (stop reason, usage) and ``message_stop``.
    Tool calls stream live one after another; a call whose deltas arrive while another call's
    arguments are still incomplete JSON is buffered and sent whole when the stream finishes, so
    interleaved parallel calls give valid, non-overlapping blocks. Text is never delayed (a text
    delta closes an open tool block; argument deltas for a closed call are not carried).
    ``finish()`` closes a stream that ended without a finish_reason (stop reason ``tool_use`` if
    tools were called, else ``end_turn``).
    A chunk carrying ``error`` raises UpstreamStatus.
    """

    def __init__(self, model: str, *, id: str | None = None) -> None:
        self.model = model
        self.id = id
        self._started = False
        self._stopped = False
        self._next_block = 0
        self._open: tuple[str, int | None] | None = None  # ("text"|"thinking"|"tool", tool index)
        self._tools: dict[int, _Tool] = {}
        self._finish: str | None = None
        self._openai_usage: dict[str, Any] | None = None
        self._signature = ""

    @property
    def stopped(self) -> bool:
        """True once ``message_stop`` went out (the upstream's finish_reason and usage arrived)."""
        return self._stopped

    @property
    def usage(self) -> tuple[int, int]:
        """(prompt_tokens, completion_tokens) reported so far, (0, 0) until the usage chunk."""
        usage = self._openai_usage or {}
        return usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0

    def feed(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """One upstream chunk (parsed ``data:`` JSON) -> Anthropic events to send."""
        if self._stopped:
            return []
        try:
            return self._feed(chunk)
        except SHAPE_ERRORS as exc:
            raise malformed("a stream chunk", exc) from exc

    def _feed(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            code = error.get("code")  # OpenAI: a string or null; some servers put the HTTP status here
            status = code if isinstance(code, int) and 400 <= code <= 599 else 502
            raise UpstreamStatus(status, f"upstream error: {error.get('message') or 'mid-stream error'}")
        out = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._openai_usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            self._delta(delta, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._close_all(out)
        # Usage follows the finish_reason (stream_options.include_usage) or rides with it.
        if self._finish is not None and isinstance(chunk.get("usage"), dict):
            self._end(out)
        return out

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """End of the upstream stream ([DONE] or EOF): close what is open and stop the message."""
        if self._stopped:
            return []
        out = self._start({})
        self._close_all(out)
        self._end(out)
        return out

    def _start(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if self._started:
            return []
        self._started = True
        if self.id is None:
            self.id = anthropic_id_from(chunk.get("id"))
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _delta(self, delta: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        reasoning = reasoning_of(delta)
        if reasoning:
            self._ensure_open("thinking", None, out, {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
        if isinstance(delta.get("reasoning_signature"), str):
            self._signature += delta["reasoning_signature"]
        content = delta.get("content")
        if isinstance(content, list):  # Mistral may stream content as a list of text parts
            content = "".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
        if isinstance(content, str) and content:
            self._ensure_open("text", None, out, {"type": "text", "text": ""})
            out.append(self._block_delta({"type": "text_delta", "text": content}))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool_delta(call, out)

    def _tool_delta(self, call: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        index = call.get("index", len(self._tools)) if isinstance(call.get("index"), int) else len(self._tools)
        tool = self._tools.setdefault(index, _Tool())
        if isinstance(call.get("id"), str) and call["id"] and not tool.id:
            tool.id = call["id"]
        function = call.get("function") or {}
        if isinstance(function.get("name"), str) and function["name"]:
            tool.name = tool.name or function["name"]
        if isinstance(function.get("arguments"), str) and function["arguments"]:
            tool.args.append(function["arguments"])
        if tool.block is None and tool.name and self._may_open_tool(index):
            self._open_tool(index, tool, out)
        if self._open == ("tool", index):
            self._send_args(tool, out)

    def _may_open_tool(self, index: int) -> bool:
        """A call's block may start unless an earlier call still waits, or another call's block is
        open with arguments that are not yet a whole JSON document (OpenAI finishes one call
        before the next starts, but some servers interleave them: those calls wait and are sent
        whole). Blocks so come in call-index order."""
        if any(i < index and t.block is None for i, t in self._tools.items()):
            return False
        if self._open is None or self._open[0] != "tool":
            return True
        live = self._tools[self._open[1]]  # type: ignore[index]
        try:
            json.loads("".join(live.args))
        except ValueError:
            return False
        return True

    def _open_tool(self, index: int, tool: _Tool, out: list[tuple[str, dict[str, Any]]]) -> None:
        tool_id = anthropic_tool_id(tool.id, f"toolu_{(self.id or 'msg').removeprefix('msg_')}_{index}")
        self._ensure_open("tool", index, out, {"type": "tool_use", "id": tool_id, "name": tool.name, "input": {}})
        tool.block = self._next_block - 1

    def _send_args(self, tool: _Tool, out: list[tuple[str, dict[str, Any]]]) -> None:
        pending = "".join(tool.args[tool.sent :])
        tool.sent = len(tool.args)
        if pending:
            out.append(self._block_delta({"type": "input_json_delta", "partial_json": pending}))

    def _ensure_open(self, kind: str, tool_index: int | None, out: list[tuple[str, dict[str, Any]]], block: dict[str, Any]) -> None:
        if self._open == (kind, tool_index):
            return
        self._close_open(out)
        out.append(("content_block_start", {"type": "content_block_start", "index": self._next_block, "content_block": block}))
        self._next_block += 1
        self._open = (kind, tool_index)

    def _block_delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._next_block - 1, "delta": delta})

    def _close_open(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open is None:
            return
        if self._open[0] == "thinking" and self._signature:
            out.append(self._block_delta({"type": "signature_delta", "signature": self._signature}))
            self._signature = ""
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._next_block - 1}))
        self._open = None

    def _close_all(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        self._close_open(out)
        for index in sorted(self._tools):
            tool = self._tools[index]
            if tool.block is None and (tool.name or tool.args):
                tool.name = tool.name or "unknown_tool"
                self._open_tool(index, tool, out)
                self._send_args(tool, out)
                self._close_open(out)

    def _end(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        self._stopped = True
        stop_reason = STOP_BY_FINISH.get(self._finish or "", None)
        if stop_reason is None:
            stop_reason = "tool_use" if self._tools else "end_turn"
        usage = usage_from_openai(self._openai_usage)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage}
        out.append(("message_delta", delta))
        out.append(("message_stop", {"type": "message_stop"}))
