"""OpenAI chat completions, the pivot wire format: shapes, request validation, usage, error events.

Runtime wire stage; pure functions, imports only the stdlib, `runtime.errors` and `runtime.wire.sse`.
Vendor fields the pivot also carries: ``reasoning_content`` (DeepSeek's name for reasoning text,
``reasoning`` is read too), ``reasoning_signature`` and ``reasoning_blocks`` (Anthropic thinking
signatures and redacted thinking, so a trip through the pivot restores them verbatim).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Callable, Literal, TypedDict

from runtime.wire.sse import encode_json
from runtime.wire._check import INT64, MISSING, array, each, fail, kind, obj, one_of, opt_bool, opt_int, opt_number, opt_object, opt_string, string

__all__ = [
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ROLES",
    "compact_json",
    "error_event",
    "reasoning_of",
    "text_of",
    "usage_from_chunk",
    "usage_from_response",
    "validate_request",
    "with_model",
]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class FunctionCall(TypedDict, total=False):
    name: str
    arguments: str  # a JSON text, as the model wrote it


class ToolCall(TypedDict, total=False):
    index: int  # streamed deltas only
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(TypedDict, total=False):
    role: str
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[ToolCall]
    tool_call_id: str
    refusal: str | None
    reasoning_content: str
    reasoning_signature: str
    reasoning_blocks: list[dict[str, Any]]


class ChatRequest(TypedDict, total=False):
    model: str
    messages: list[ChatMessage]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: str | list[str]
    stream: bool
    stream_options: dict[str, Any]
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    user: str
    response_format: dict[str, Any]


class Usage(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]


class Choice(TypedDict, total=False):
    index: int
    message: ChatMessage
    logprobs: None
    finish_reason: str | None


class ChatResponse(TypedDict, total=False):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChunkChoice(TypedDict, total=False):
    index: int
    delta: ChatMessage
    logprobs: None
    finish_reason: str | None


class ChatChunk(TypedDict, total=False):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChunkChoice]
    usage: Usage | None


def compact_json(value: Any) -> str:
    """JSON text without spaces, as OpenAI models write tool-call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def with_model(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Same-format passthrough: the body untouched except ``model``."""
    return {**body, "model": model}


def text_of(message: dict[str, Any]) -> str:
    """The text of a message: string content as is; text parts joined by "\\n"; images skipped."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def reasoning_of(message: dict[str, Any]) -> str | None:
    """Reasoning text of a message or delta: DeepSeek's ``reasoning_content`` or vLLM/OpenRouter's ``reasoning``."""
    value = message.get("reasoning_content")
    if not isinstance(value, str):
        value = message.get("reasoning")
    return value if isinstance(value, str) else None


def _usage_pair(usage: Any) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return (0, 0)
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


def usage_from_response(resp: dict[str, Any]) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of a chat.completion; (0, 0) when it reports none."""
    return _usage_pair(resp.get("usage"))


def usage_from_chunk(chunk: dict[str, Any]) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of a streamed chunk that carries usage (the last one
    with ``stream_options.include_usage``), else None."""
    usage = chunk.get("usage")
    return _usage_pair(usage) if isinstance(usage, dict) else None


def error_event(error_body: dict[str, Any]) -> bytes:
    """SSE bytes for an error after streaming began: OpenAI clients read ``data: {"error": {...}}``
    (the openai SDK raises APIError on it). ``error_body`` is ``errors.render(...)``'s output."""
    body = error_body if "error" in error_body else {"error": error_body}
    return encode_json(body)


# --- validation ---------------------------------------------------------------------------

_PART_TYPES_BY_ROLE = {
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "assistant": ("text", "refusal"),
}


# Optional top-level fields, in the order they are checked (the first bad one is reported).
_OPTIONAL_FIELDS: tuple[tuple[str, Callable[[dict[str, Any], str, str], None]], ...] = (
    ("stream", opt_bool),
    ("stream_options", opt_object),
    ("max_tokens", partial(opt_int, minimum=1)),
    ("max_completion_tokens", partial(opt_int, minimum=1)),
    ("n", partial(opt_int, minimum=1)),
    ("seed", partial(opt_int, minimum=INT64[0], maximum=INT64[1])),  # OpenAI documents an int64
    ("temperature", partial(opt_number, low=0, high=2)),
    ("top_p", partial(opt_number, low=0, high=1)),
    ("presence_penalty", partial(opt_number, low=-2, high=2)),
    ("frequency_penalty", partial(opt_number, low=-2, high=2)),
    ("parallel_tool_calls", opt_bool),
    ("logprobs", opt_bool),
    ("user", opt_string),
    ("response_format", opt_object),
    ("metadata", opt_object),
)


def validate_request(body: object) -> dict[str, Any]:
    """Check a chat-completions request's shape and return it unchanged.

    Raises InvalidRequest naming the first bad field, e.g. ``messages[2].content: expected string
    or array of content parts``. Unknown fields (top level, messages, parts) are allowed, so new
    API features pass through; the model name itself is checked by the resolver, not here.
    """
    if not isinstance(body, dict):
        fail("request body", f"expected a JSON object, got {kind(body)}")
    opt_string(body, "model", "")
    messages = array(body.get("messages", MISSING), "messages", non_empty=True)
    for message in messages:  # an agent's history is mostly {role, content: "..."}: checked inline
        if type(message) is not dict or len(message) != 2 or type(message.get("content")) is not str \
                or message.get("role") not in _PLAIN_ROLES:
            each(messages, "messages", _check_message)
            break
    for key, check in _OPTIONAL_FIELDS:
        if key in body:  # most requests carry few of them: no call for the absent ones
            check(body, key, "")
    _check_stop(body.get("stop"))
    _check_tools(body)
    return body


# Roles whose message is whole with a role and a string content (``tool`` also needs tool_call_id).
# A tuple, not a set: a role that is a list or an object must reach the check that words its error.
_PLAIN_ROLES = ("system", "developer", "user", "assistant")

# Items of a list are checked with paths relative to the item (``_check.each`` adds ``[i]``).


def _check_message(message: Any) -> None:
    message = obj(message, "")
    if "role" not in message:
        fail(".role", "missing (expected one of " + ", ".join(repr(r) for r in ROLES) + ")")
    role = one_of(message["role"], ROLES, ".role")
    opt_string(message, "name", ".")
    content = message.get("content")
    if role == "assistant":
        if content is not None:
            _check_content(content, role)
        if message.get("tool_calls") is not None:
            each(array(message["tool_calls"], ".tool_calls"), ".tool_calls", _check_tool_call)
        opt_string(message, "reasoning_content", ".")
        opt_string(message, "reasoning_signature", ".")
        return
    if role == "function":
        if content is not None:
            string(content, ".content")
        string(message.get("name", MISSING), ".name")
        return
    if "content" not in message:
        fail(".content", "missing (expected string or array of content parts)")
    _check_content(content, role)
    if role == "tool":
        string(message.get("tool_call_id", MISSING), ".tool_call_id")


def _check_content(content: Any, role: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        fail(".content", f"expected string or array of content parts, got {kind(content)}")
    if not content:
        fail(".content", "expected a non-empty array of content parts")
    each(content, ".content", _check_part, role, _PART_TYPES_BY_ROLE.get(role))


def _check_part(part: Any, role: str, allowed: tuple[str, ...] | None) -> None:
    part = obj(part, "")
    ptype = string(part.get("type", MISSING), ".type")
    if allowed is not None and ptype not in allowed:
        fail(".type", f"a {role} message accepts only {', '.join(allowed)} parts, got {ptype!r}")
    if ptype == "text":
        string(part.get("text", MISSING), ".text")
    elif ptype == "refusal":
        string(part.get("refusal", MISSING), ".refusal")
    elif ptype == "image_url":
        image = obj(part.get("image_url", MISSING), ".image_url")
        string(image.get("url", MISSING), ".image_url.url")
    elif ptype == "file":
        obj(part.get("file", MISSING), ".file")
    elif ptype == "input_audio":
        obj(part.get("input_audio", MISSING), ".input_audio")


def _check_tool_call(call: Any) -> None:
    call = obj(call, "")
    string(call.get("id", MISSING), ".id")
    if call.get("type", "function") != "function":
        fail(".type", f"expected 'function', got {call.get('type')!r}")
    function = obj(call.get("function", MISSING), ".function")
    string(function.get("name", MISSING), ".function.name")
    string(function.get("arguments", MISSING), ".function.arguments")


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    for i, item in enumerate(array(stop, "stop")):
        string(item, f"stop[{i}]")


def _check_tool(tool: Any) -> None:
    tool = obj(tool, "")
    ttype = string(tool.get("type", MISSING), ".type")
    if ttype == "function":
        function = obj(tool.get("function", MISSING), ".function")
        string(function.get("name", MISSING), ".function.name")
        opt_string(function, "description", ".function.")
        opt_object(function, "parameters", ".function.")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        each(array(tools, "tools"), "tools", _check_tool)
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        one_of(choice, ("none", "auto", "required"), "tool_choice")
        return
    choice = obj(choice, "tool_choice")
    if choice.get("type") == "function":
        function = obj(choice.get("function", MISSING), "tool_choice.function")
        string(function.get("name", MISSING), "tool_choice.function.name")
    else:
        string(choice.get("type", MISSING), "tool_choice.type")
