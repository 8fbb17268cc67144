"""Anthropic Messages <-> OpenAI chat (the pivot): requests, responses, streams, error events.

Runtime wire stage; pure functions (no I/O, clock, randomness or config), stdlib and `runtime.*` only.

Choices where the formats differ (each keeps what the target can carry and drops the rest):

- OpenAI -> Anthropic hoists every ``system``/``developer`` message, wherever it sits, into the
  top-level ``system`` string, joined by "\\n\\n" (the Messages API has no mid-conversation system
  turn without a beta). Anthropic -> OpenAI keeps mid-conversation ``role: system`` in place.
- Tool-call ``arguments`` that are not a JSON object become ``{"_raw": "<the text>"}``, so the
  request still goes through and the model sees what it wrote. ``""`` becomes ``{}``.
- ``is_error`` tool results travel as tool messages whose text starts with ``"Error: "``; the
  reverse trip turns that prefix back into ``is_error: true``.
- Images inside tool results follow the tool messages in a user message (OpenAI tool messages
  carry text only), introduced by a text part naming the tool call.
- Thinking: ``reasoning_content`` holds the text, ``reasoning_signature`` the signature; several
  thinking blocks or redacted thinking are also kept verbatim in ``reasoning_blocks``. Toward an
  Anthropic upstream, reasoning without a signature (another model's) is dropped from requests,
  since Anthropic rejects unsigned thinking blocks; responses keep it for the client to show.
- ``metadata.user_id`` <-> ``user``: ids the target rejects (over OpenAI's 64 characters, like
  Claude Code's JSON user_id; emails or phone numbers toward Anthropic) become their SHA-256 digest.
- Streams: see `StreamToOpenAI` and `StreamFromOpenAI`; an upstream ``error`` event or chunk
  raises UpstreamStatus for the caller to render with `error_event` in the client's format.
- Dropped: stop sequences past OpenAI's four, ``top_k``, ``cache_control``, ``thinking``/``output_config``/``context_management``
  (toward OpenAI); ``response_format``, ``reasoning_effort``, ``seed``, penalties, ``logprobs``
  (toward Anthropic). ``n`` > 1 cannot be carried: TranslationError. Temperatures above 1 are
  clamped to Anthropic's maximum of 1.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from runtime.wire.sse import encode_json
from runtime.wire._anthropic_common import (
    FINISH_BY_STOP,
    SHAPE_ERRORS,
    STOP_BY_FINISH,
    anthropic_id_from,
    malformed,
    openai_id_from,
    usage_from_openai,
    usage_to_openai,
)
from runtime.wire._anthropic_request import (
    DEFAULT_MAX_TOKENS,
    assistant_from_openai,
    parse_arguments,
    reasoning_fields,
    request_from_openai,
    request_to_openai,
)
from runtime.wire._anthropic_cache import DEFAULT_MIN_PREFIX_TOKENS, with_cache_breakpoints
from runtime.wire._anthropic_stream import StreamFromOpenAI, StreamToOpenAI
from runtime.wire._anthropic_validate import validate_request
from runtime.wire.openai_chat import compact_json

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MIN_PREFIX_TOKENS",
    "MessagesRequest",
    "MessagesResponse",
    "StreamEvent",
    "StreamFromOpenAI",
    "StreamToOpenAI",
    "error_event",
    "parse_arguments",
    "request_from_openai",
    "request_to_openai",
    "response_from_openai",
    "response_to_openai",
    "validate_request",
    "with_cache_breakpoints",
    "with_model",
]


class ContentBlock(TypedDict, total=False):
    type: str
    text: str
    source: dict[str, Any]
    id: str
    name: str
    input: dict[str, Any]
    tool_use_id: str
    content: str | list[dict[str, Any]]
    is_error: bool
    thinking: str
    signature: str
    data: str


class Message(TypedDict, total=False):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class MessagesRequest(TypedDict, total=False):
    model: str
    max_tokens: int
    messages: list[Message]
    system: str | list[ContentBlock]
    tools: list[dict[str, Any]]
    tool_choice: dict[str, Any]
    stop_sequences: list[str]
    temperature: float
    top_p: float
    top_k: int
    metadata: dict[str, Any]
    stream: bool
    thinking: dict[str, Any]


class MessagesResponse(TypedDict, total=False):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: dict[str, int]


class StreamEvent(TypedDict, total=False):
    """The ``data`` of one Messages stream event; ``type`` repeats the SSE ``event:`` name."""

    type: str  # message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error
    message: MessagesResponse
    index: int
    content_block: ContentBlock
    delta: dict[str, Any]
    usage: dict[str, int]
    error: dict[str, str]


def with_model(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Same-format passthrough: the body untouched except ``model``."""
    return {**body, "model": model}


def error_event(error_body: dict[str, Any]) -> bytes:
    """SSE bytes for an error after streaming began: ``event: error`` with
    ``{"type": "error", "error": {...}}``. ``error_body`` is ``errors.render(...)``'s output."""
    body = error_body if error_body.get("type") == "error" else {"type": "error", "error": error_body.get("error", error_body)}
    return encode_json(body, event="error")


# --- responses (not streamed) -------------------------------------------------------------


def response_to_openai(resp: dict[str, Any], *, model: str | None = None, created: int = 0) -> dict[str, Any]:
    """An Anthropic Messages response as an OpenAI chat.completion. ``model`` (the name the
    client asked for) replaces the upstream's; ``created`` is the caller's clock reading.
    A response of the wrong shape raises UpstreamError."""
    try:
        return _response_to_openai(resp, model, created)
    except SHAPE_ERRORS as exc:
        raise malformed("a Messages response", exc) from exc


def _response_to_openai(resp: dict[str, Any], model: str | None, created: int) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in resp.get("content") or ():
        btype = block.get("type")
        if btype == "text":
            texts.append(block.get("text", ""))
        elif btype == "tool_use":
            calls.append({
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": compact_json(block.get("input") or {})},
            })
        elif btype in ("thinking", "redacted_thinking"):
            thinking.append(block)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message.update(reasoning_fields(thinking))
    stop_reason = resp.get("stop_reason")
    return {
        "id": openai_id_from(resp.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": model if model is not None else resp.get("model", ""),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH_BY_STOP.get(stop_reason, "stop")}],
        "usage": usage_to_openai(resp.get("usage")),
    }


def response_from_openai(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """An OpenAI chat.completion as an Anthropic Messages response (first choice); ``model`` is
    the name the client asked for. A response of the wrong shape raises UpstreamError."""
    try:
        return _response_from_openai(resp, model)
    except SHAPE_ERRORS as exc:
        raise malformed("a chat completion", exc) from exc


def _response_from_openai(resp: dict[str, Any], model: str) -> dict[str, Any]:
    choices = resp.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    converted = assistant_from_openai(message, signed_only=False)
    blocks = converted["content"] if converted else []
    if isinstance(blocks, str):
        blocks = [{"type": "text", "text": blocks}]
    for block in blocks:
        if block["type"] == "thinking":
            block.setdefault("signature", "")  # the SDK's ThinkingBlock requires the field
    finish = choice.get("finish_reason")
    stop_reason = STOP_BY_FINISH.get(finish, "end_turn")
    if finish is None and any(b["type"] == "tool_use" for b in blocks):
        stop_reason = "tool_use"
    return {
        "id": anthropic_id_from(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_from_openai(resp.get("usage")),
    }
