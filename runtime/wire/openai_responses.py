"""OpenAI Responses API (``POST /v1/responses``) <-> OpenAI chat, the pivot; pure, no I/O.

Stage: wire. Imports the stdlib, ``runtime.errors`` and the other wire modules.

- ``validate_request``: the request's shape (400 naming the field), unknown fields allowed.
- ``request_to_chat``: a Responses request (its ``input`` already expanded with the stored
  history of ``previous_response_id``) as a chat request.
- ``response_from_chat``: a chat completion as a Responses ``response`` object.
- ``StreamFromChat``: chat chunks in, Responses stream events out (``response.created`` ...
  ``response.completed``), every event numbered (``sequence_number``).
- ``output_items``/``input_items``: what a stored response keeps, so a follow-up can name it.
- ``chat_messages``: the conversation as chat messages, leniently (what the router reads).

Where the formats differ:
- ``instructions`` and ``system``/``developer`` input messages become chat ``system`` messages
  (``developer`` is OpenAI-only); ``reasoning`` input items become the next assistant message's
  ``reasoning_content``; consecutive ``function_call`` items become one assistant message's
  ``tool_calls`` and ``function_call_output`` items ``tool`` messages.
- Input items of other types are accepted (a Responses upstream gets them as sent). Translated to
  chat, the records of server-side built-in tool calls (``web_search_call``, ``file_search_call``,
  ...; their results are in the message after them) are left out; items a client must answer or
  that name stored items (``computer_call``, ``local_shell_call``, ``custom_tool_call``,
  ``item_reference``, ...) are refused with a 400 naming the type.
- Only function tools have a chat equivalent. Built-in tools (``web_search``, ``file_search``,
  ``code_interpreter``, ...) and tool namespaces are left out of the translated request, and
  ``dropped_tools`` names them (the gateway says so in ``x-arch-dropped-tools``): Codex offers
  ``web_search`` on every turn, and a 400 would make it unusable through any chat upstream. A
  ``tool_choice`` that forces one of them is refused with a 400 naming it.
- ``max_output_tokens`` -> ``max_tokens``; ``reasoning.effort`` -> ``reasoning_effort``;
  ``text.format`` (json_schema / json_object) -> ``response_format``.
- A chat ``finish_reason`` of ``length`` ends the response ``incomplete``
  (``incomplete_details.reason = "max_output_tokens"``); ``content_filter`` likewise.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import Any, Iterator, Mapping

from runtime.errors import InvalidRequest, TranslationError
from runtime.wire._check import (MISSING, array, each, fail, kind, obj, one_of, opt_bool, opt_int, opt_number, opt_object,
                                 opt_string, string)
from runtime.wire.openai_chat import reasoning_of, text_of
from runtime.wire.sse import encode_json
from runtime.wire.json_text import dumps

__all__ = ["StreamFromChat", "chat_messages", "dropped_tools", "error_event", "input_items", "listed_item", "output_items", "request_to_chat", "response_from_chat",
           "response_id", "validate_request"]

_ROLES = ("user", "assistant", "system", "developer")
_CHAT_ITEMS = frozenset({"message", "function_call", "function_call_output", "reasoning"})
# Records of built-in tools the upstream ran itself: their results are in the message that follows.
_SERVER_SIDE = frozenset({"web_search_call", "file_search_call", "image_generation_call", "code_interpreter_call",
                          "mcp_call", "mcp_list_tools"})
_INPUT_PARTS = ("input_text", "input_image", "input_file", "output_text", "refusal", "text")


def response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def _item_id(prefix: str) -> str:
    """An output item's id: unique, not a secret (a response id is: it reads a stored response back),
    so drawn without a system call."""
    return f"{prefix}_{_items.getrandbits(192):048x}"


_items = random.Random(secrets.randbits(128))


# --- validation ---------------------------------------------------------------------------------


def validate_request(body: object) -> dict[str, Any]:
    """Check a Responses request's shape and return it unchanged (InvalidRequest names the field)."""
    if not isinstance(body, dict):
        fail("request body", f"expected a JSON object, got {kind(body)}")
    opt_string(body, "model", "")
    opt_string(body, "instructions", "")
    opt_string(body, "previous_response_id", "")
    source = body.get("input", MISSING)
    if source is MISSING and not body.get("previous_response_id"):
        fail("input", "missing (expected a string or an array of input items)")
    if isinstance(source, list):
        each(source, "input", _check_item)
    elif source is not MISSING and not isinstance(source, str):
        fail("input", f"expected a string or an array of input items, got {kind(source)}")
    for key, check in _OPTIONAL:
        if key in body and body[key] is not None:
            check(body, key, "")
    if body.get("tools") is not None:
        each(array(body["tools"], "tools"), "tools", _check_tool)
    _check_tool_choice(body.get("tool_choice"))
    _check_text(body.get("text"))
    return body


def _opt_reasoning(body: dict[str, Any], key: str, path: str) -> None:
    reasoning = obj(body[key], "reasoning")
    if reasoning.get("effort") is not None:
        one_of(reasoning["effort"], ("minimal", "low", "medium", "high", "none", "xhigh"), "reasoning.effort")


_OPTIONAL = (
    ("stream", opt_bool),
    ("store", opt_bool),
    ("parallel_tool_calls", opt_bool),
    ("max_output_tokens", lambda b, k, p: opt_int(b, k, p, minimum=1)),
    ("temperature", lambda b, k, p: opt_number(b, k, p, low=0, high=2)),
    ("top_p", lambda b, k, p: opt_number(b, k, p, low=0, high=1)),
    ("metadata", opt_object),
    ("user", opt_string),
    ("reasoning", _opt_reasoning),
)


def _check_item(item: Any) -> None:
    item = obj(item, "")
    itype = item.get("type", "message")
    if not isinstance(itype, str):
        fail(".type", f"expected string, got {kind(itype)}")
    if itype == "message":
        one_of(item.get("role", MISSING), _ROLES, ".role")
        _check_content(item.get("content", MISSING), ".content")
        if item["content"] == []:
            fail(".content", "expected a string or a non-empty array of content parts")
    elif itype == "function_call":
        for key in ("call_id", "name", "arguments"):
            string(item.get(key, MISSING), f".{key}")
    elif itype == "function_call_output":
        string(item.get("call_id", MISSING), ".call_id")
        _check_content(item.get("output", MISSING), ".output")
    elif itype == "reasoning":
        summary = item.get("summary", [])
        each(array(summary, ".summary"), ".summary", _check_summary)
    # Any other type is its server's to check: a Responses upstream takes it as sent; translated to
    # chat it is left out or refused by ``_messages``, naming it.


def _check_content(content: Any, path: str) -> None:
    """A message's content or a function call's output: a string, or an array of content parts."""
    if isinstance(content, list):
        each(content, path, _check_part)
    elif not isinstance(content, str):
        fail(path, "missing (expected a string or an array of content parts)" if content is MISSING
             else f"expected a string or an array of content parts, got {kind(content)}")


def _check_part(part: Any) -> None:
    part = obj(part, "")
    ptype = part.get("type", MISSING)
    one_of(ptype, _INPUT_PARTS, ".type")
    if ptype in ("input_text", "output_text", "text") and not isinstance(part.get("text"), str):
        fail(".text", "missing (expected string)" if "text" not in part else f"expected string, got {kind(part['text'])}")
    if ptype == "refusal" and not isinstance(part.get("refusal"), str):
        fail(".refusal", "missing (expected string)")
    if ptype == "input_image" and not isinstance(part.get("image_url"), str):
        fail(".image_url", "missing (expected a URL or data URL string; file_id images are not served)")


def _check_summary(part: Any) -> None:
    part = obj(part, "")
    if not isinstance(part.get("text"), str):
        fail(".text", "missing (expected string)")


def _check_tool(tool: Any) -> None:
    tool = obj(tool, "")
    ttype = tool.get("type", MISSING)
    if not isinstance(ttype, str):
        fail(".type", "missing (expected string)" if ttype is MISSING else f"expected string, got {kind(ttype)}")
    if ttype != "function":
        return  # a built-in tool or a namespace: its own fields are its server's to check
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        fail(".name", "missing (expected a non-empty string)")
    if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
        fail(".parameters", f"expected object, got {kind(tool['parameters'])}")
    if tool.get("description") is not None and not isinstance(tool["description"], str):
        fail(".description", f"expected string, got {kind(tool['description'])}")
    if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
        fail(".strict", f"expected boolean, got {kind(tool['strict'])}")


def _check_tool_choice(choice: Any) -> None:
    if choice is None or choice in ("auto", "none", "required"):
        return
    if isinstance(choice, dict) and isinstance(choice.get("type"), str) and \
            (choice["type"] != "function" or isinstance(choice.get("name"), str)):
        return
    fail("tool_choice", "expected 'auto', 'none', 'required' or an object such as {\"type\": \"function\", \"name\": ...}")


def dropped_tools(body: dict[str, Any]) -> list[str]:
    """The request's tools that chat has no equivalent for (built-in tools, namespaces), by name
    or type: ``request_to_chat`` leaves them out."""
    return [str(tool.get("name") or tool["type"]) for tool in body.get("tools") or [] if tool["type"] != "function"]


def _check_text(text: Any) -> None:
    if text is None:
        return
    text = obj(text, "text")
    fmt = text.get("format")
    if fmt is None:
        return
    fmt = obj(fmt, "text.format")
    ftype = one_of(fmt.get("type", MISSING), ("text", "json_object", "json_schema"), "text.format.type")
    if ftype == "json_schema":
        if not isinstance(fmt.get("name"), str):
            fail("text.format.name", "missing (expected string)")
        obj(fmt.get("schema", MISSING), "text.format.schema")


# --- request: Responses -> chat --------------------------------------------------------------------


def request_to_chat(body: dict[str, Any], *, keep_reasoning: bool = True) -> dict[str, Any]:
    """A validated Responses request as a chat request (its ``input`` already holds the stored
    history of ``previous_response_id``: runtime/http/stored.py's ``expand``). ``keep_reasoning=False``
    leaves reasoning items out (upstreams that refuse ``reasoning_content`` in input messages)."""
    messages = chat_messages(body, keep_reasoning=keep_reasoning, strict=True)
    if not messages:
        raise InvalidRequest("input: the request has no message to send", code="invalid_request")
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(key) is not None:
            out[key] = body[key]
    effort = (body.get("reasoning") or {}).get("effort")
    if effort not in (None, "none"):
        out["reasoning_effort"] = effort
    tools = [_tool_to_chat(tool) for tool in body.get("tools") or [] if tool["type"] == "function"]
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice["type"] != "function":
            raise TranslationError(f"tool_choice: {choice['type']!r} is served only by an upstream that speaks the Responses "
                                   "API; this request is translated to chat completions, which has function tools only",
                                   code="untranslatable_tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None and tools:
        out["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def chat_messages(body: dict[str, Any], *, keep_reasoning: bool = True, strict: bool = False) -> list[dict[str, Any]]:
    """``instructions`` and the input items as chat messages. ``strict``: an item chat cannot express
    raises TranslationError (the request is being translated); else it is skipped (the router reads
    the conversation of a request that may be passed through)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = input_items(body)
    if not keep_reasoning:
        items = [item for item in items if item.get("type") != "reasoning"]
    messages.extend(_messages(items, strict))
    return messages


def _tool_to_chat(tool: dict[str, Any]) -> dict[str, Any]:
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _messages(items: list[dict[str, Any]], strict: bool) -> Iterator[dict[str, Any]]:
    """Input items as chat messages: function calls join the assistant message before them."""
    assistant: dict[str, Any] | None = None  # the open assistant message, while calls may still join it
    reasoning: list[str] = []
    for item in items:
        itype = item.get("type", "message")
        if itype not in _CHAT_ITEMS:
            if strict and itype not in _SERVER_SIDE:
                raise TranslationError(f"input items of type {itype!r} are served only by an upstream that speaks the "
                                       "Responses API; this request is translated to chat completions, which has "
                                       "messages, function calls and their outputs only", code="untranslatable_item")
            continue
        if itype == "reasoning":
            # A stored item from a passed-through answer was never validated: what is not text is skipped.
            summary = item.get("summary")
            if isinstance(summary, list):
                reasoning.extend(p["text"] for p in summary if isinstance(p, dict) and isinstance(p.get("text"), str))
            continue
        if itype == "function_call":
            if assistant is None:
                assistant = {"role": "assistant", "content": None}
                if reasoning:
                    assistant["reasoning_content"], reasoning = "\n".join(reasoning), []
            assistant.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}})
            continue
        if assistant is not None:
            yield assistant
            assistant = None
        if itype == "function_call_output":
            yield {"role": "tool", "tool_call_id": item["call_id"], "content": _text(item["output"])}
            continue
        role = item["role"]
        if role == "assistant":
            assistant = {"role": "assistant", "content": _text(item["content"])}
            if reasoning:
                assistant["reasoning_content"], reasoning = "\n".join(reasoning), []
            continue
        yield {"role": "system" if role == "developer" else role, "content": _content(item["content"], role)}
    if assistant is not None:
        yield assistant


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))


def _content(content: Any, role: str) -> Any:
    """A user/system message's content: a string stays one; parts become chat parts."""
    if isinstance(content, str) or role != "user":
        return _text(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        ptype = part["type"]
        if ptype in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part["text"]})
        elif ptype == "input_image":
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif ptype == "input_file":
            file = {k: part[k] for k in ("file_data", "file_id", "filename") if isinstance(part.get(k), str)}
            parts.append({"type": "file", "file": file})
    return parts


# --- response: chat -> Responses -------------------------------------------------------------------


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _usage(prompt: int, completion: int, reasoning: int = 0, cached: int = 0) -> dict[str, Any]:
    # cache_write_tokens: required by the API's published schema; chat usage does not report it.
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": prompt + completion}


def _usage_from_chat(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else 0
    completion = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else 0
    details = usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
    prompt_details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    reasoning = details.get("reasoning_tokens") if isinstance(details.get("reasoning_tokens"), int) else 0
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details.get("cached_tokens"), int) else 0
    return _usage(prompt, completion, reasoning, cached)


def _envelope(request: dict[str, Any], rid: str, model: str, created: int, status: str) -> dict[str, Any]:
    """The response object's fields that echo the request."""
    fmt = (request.get("text") or {}).get("format") or {"type": "text"}
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "error": None,
        "incomplete_details": None, "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"), "model": model, "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": (request.get("reasoning") or {}).get("effort"), "summary": None},
        "store": request.get("store", True), "temperature": request.get("temperature", 1.0), "text": {"format": fmt},
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0), "truncation": "disabled", "usage": None, "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def response_from_chat(resp: dict[str, Any], request: dict[str, Any], *, model: str, rid: str | None = None) -> dict[str, Any]:
    """A (non-streamed) chat completion as a Responses ``response`` object."""
    choice = resp["choices"][0] if resp.get("choices") else {"message": {}, "finish_reason": "stop"}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        output.append({"type": "reasoning", "id": _item_id("rs"), "summary": [{"type": "summary_text", "text": reasoning}]})
    text = text_of(message)
    if text or not message.get("tool_calls"):
        output.append(_message_item(_item_id("msg"), text, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append({"type": "function_call", "id": _item_id("fc"), "call_id": call.get("id") or _item_id("call"),
                       "name": function.get("name") or "", "arguments": function.get("arguments") or "", "status": "completed"})
    incomplete = _INCOMPLETE.get(choice.get("finish_reason"))
    out = _envelope(request, rid or response_id(), model, int(resp.get("created") or time.time()),
                    "incomplete" if incomplete else "completed")
    if incomplete:
        out["incomplete_details"] = {"reason": incomplete}
    out["output"] = output
    out["usage"] = _usage_from_chat(resp.get("usage"))
    return out


def _message_item(iid: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    return {"type": "message", "id": iid, "status": status, "role": "assistant", "content": content}


# --- stored state ----------------------------------------------------------------------------------


def input_items(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as items (a string is one user message), as a stored response keeps them."""
    source = body.get("input")
    if isinstance(source, str):
        return [{"type": "message", "role": "user", "content": source}]
    return list(source or [])


_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def listed_item(item: dict[str, Any], key: str) -> dict[str, Any]:
    """A stored input item as the API lists it: with an ``id`` (its own, else ``<prefix>_<key>``), and a
    message's string content as one text part (``input_text``; ``output_text`` for the assistant)."""
    out = dict(item)
    kind = out.get("type", "message")
    out.setdefault("type", kind)
    if not isinstance(out.get("id"), str):
        out["id"] = f"{_ITEM_PREFIX.get(kind, 'item')}_{key}"
    if kind == "message" and isinstance(out.get("content"), str):
        part = "output_text" if out.get("role") == "assistant" else "input_text"
        out["content"] = [{"type": part, "text": out["content"], **({"annotations": []} if part == "output_text" else {})}]
    if kind == "message":
        out.setdefault("status", "completed")
    return out


def output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's output as input items for the next turn (what ``previous_response_id`` expands to)."""
    items: list[dict[str, Any]] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue  # not an item (a passed-through upstream's answer is not checked item by item)
        if item["type"] == "message":
            items.append({"type": "message", "role": "assistant", "content": _text(item.get("content") or [])})
        elif item["type"] != "function_call" or all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
            items.append(item)  # as the upstream gave it: a Responses upstream takes it back as input
    return items


# --- streams: chat chunks -> Responses events ------------------------------------------------------

# A message's events, written from templates: the events of an answer's text, most of every
# translated stream, without a dict or a JSON write each (the same bytes the dicts would give;
# tests/runtime/wire/test_wire_responses_properties.py compares them with the general writer).
_ENVELOPE_EVENTS = (b'event: response.created\ndata: {"type":"response.created","sequence_number":%d,"response":%s}\n\n'
                    b'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":%d,"response":%s}\n\n')
_MESSAGE_ADDED = (b'event: response.output_item.added\ndata: {"type":"response.output_item.added","sequence_number":%d,'
                  b'"output_index":%d,"item":{"type":"message","id":%s,"status":"in_progress","role":"assistant","content":[]}}\n\n'
                  b'event: response.content_part.added\ndata: {"type":"response.content_part.added","sequence_number":%d,'
                  b'"item_id":%s,"output_index":%d,"content_index":0,'
                  b'"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}\n\n')
_TEXT_DELTA = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":%d,'
               b'"item_id":%s,"output_index":%d,"delta":%s,"content_index":0,"logprobs":[]}\n\n')
_MESSAGE_DONE = (b'event: response.output_text.done\ndata: {"type":"response.output_text.done","sequence_number":%d,'
                 b'"item_id":%s,"output_index":%d,"content_index":0,"text":%s,"logprobs":[]}\n\n'
                 b'event: response.content_part.done\ndata: {"type":"response.content_part.done","sequence_number":%d,'
                 b'"item_id":%s,"output_index":%d,"content_index":0,'
                 b'"part":{"type":"output_text","text":%s,"annotations":[],"logprobs":[]}}\n\n'
                 b'event: response.output_item.done\ndata: {"type":"response.output_item.done","sequence_number":%d,'
                 b'"output_index":%d,"item":{"type":"message","id":%s,"status":"completed","role":"assistant",'
                 b'"content":[{"type":"output_text","text":%s,"annotations":[],"logprobs":[]}]}}\n\n')


class StreamFromChat:
    """Chat chunks in (``feed`` each parsed chunk), Responses events out as SSE bytes (each element
    one or more whole events, numbered in order).

    Items open as their first delta arrives (reasoning, then text, then each tool call) and close
    when another begins or the stream ends; ``finish`` closes what is open and sends
    ``response.completed`` (or ``response.incomplete``) with the whole output and the usage; its
    data (the JSON of that event) is kept in ``final_data``. A message's events are written from
    templates (``_MESSAGE_ADDED``...), the others from their dicts (``_event``).
    """

    def __init__(self, request: dict[str, Any], *, model: str, rid: str | None = None) -> None:
        self.response = _envelope(request, rid or response_id(), model, int(time.time()), "in_progress")
        self.sequence = 0
        self.started = False
        self.open: dict[str, Any] | None = None  # the output item being streamed
        self.open_id = b""  # its id, as JSON
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool_call index -> its function_call item
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.final_data = b""  # the final event's data, once finished

    def _event(self, kind: str, /, **data: Any) -> bytes:
        sequence = self.sequence
        self.sequence += 1
        return encode_json({"type": kind, "sequence_number": sequence, **data}, event=kind)

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        envelope = dumps({**self.response, "output": []})  # written out once for both events
        self.sequence += 2
        return [_ENVELOPE_EVENTS % (self.sequence - 2, envelope, self.sequence - 1, envelope)]

    def _open(self, item: dict[str, Any]) -> list[bytes]:
        """Announce a new output item. A message or reasoning item closes whatever is open; a
        function call closes only an open message or reasoning item: calls stay open side by side,
        as a chat stream may interleave their argument deltas."""
        out = self._close_text()
        if item["type"] != "function_call":
            out += self._close_calls()
            self.open = item
            self.open_id = dumps(item["id"])
        self.response["output"].append(item)
        index = len(self.response["output"]) - 1
        if item["type"] == "message":
            sequence = self.sequence
            self.sequence += 2
            out.append(_MESSAGE_ADDED % (sequence, index, self.open_id, sequence + 1, self.open_id, index))
            return out
        announced = {k: v for k, v in item.items() if not k.startswith("_")}
        out.append(self._event("response.output_item.added", output_index=index, item={**announced, **_pending(item)}))
        if item["type"] == "reasoning":
            out.append(self._event("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                                   summary_index=0, part={"type": "summary_text", "text": ""}))
        return out

    def _close_text(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = self.response["output"].index(item)
        text = item.pop("_text")
        if item["type"] == "message":
            item["content"] = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            item["status"] = "completed"
            sequence, written = self.sequence, dumps(text)
            self.sequence += 3
            return [_MESSAGE_DONE % (sequence, self.open_id, index, written, sequence + 1, self.open_id, index, written,
                                     sequence + 2, index, self.open_id, written)]
        part = {"type": "summary_text", "text": text}
        out = [self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                           summary_index=0, text=text),
               self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                           summary_index=0, part=part)]
        item["summary"] = [part]
        out.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return out

    def _close_calls(self) -> list[bytes]:
        out: list[bytes] = []
        for item in self.calls.values():
            if item["status"] != "in_progress":
                continue
            index = self.response["output"].index(item)
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   name=item["name"], arguments=item["arguments"]))
            item["status"] = "completed"
            out.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return out

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out = self._start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 has no Responses equivalent: the first choice is the answer
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                if self.open is None or self.open["type"] != "reasoning":
                    out += self._open({"type": "reasoning", "id": _item_id("rs"), "summary": [], "_text": ""})
                self.open["_text"] += reasoning  # type: ignore[index]
                out.append(self._event("response.reasoning_summary_text.delta", item_id=self.open["id"],  # type: ignore[index]
                                       output_index=len(self.response["output"]) - 1, delta=reasoning, summary_index=0))
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.open is None or self.open["type"] != "message":
                    out += self._open({"type": "message", "id": _item_id("msg"), "status": "in_progress", "role": "assistant",
                                       "content": [], "_text": ""})
                out.append(self._text(text))
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def text_delta(self, chunk: dict[str, Any]) -> bytes | None:
        """For a chunk that carries only text for the first choice (no usage, reasoning, tool calls or
        finish reason: whatever else ``feed`` reads) while a message is open: its
        ``response.output_text.delta`` event, the bytes ``feed`` would give, with less reading (most
        of a long answer's chunks). None for any other chunk: ``feed`` it."""
        item = self.open
        text = _text_only(chunk) if item is not None and item["type"] == "message" else None
        return None if text is None else self._text(text)

    def _text(self, text: str) -> bytes:
        """An open message's text delta."""
        self.open["_text"] += text  # type: ignore[index]
        sequence = self.sequence
        self.sequence += 1
        return _TEXT_DELTA % (sequence, self.open_id, len(self.response["output"]) - 1, dumps(text))

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            item = {"type": "function_call", "id": _item_id("fc"), "call_id": call.get("id") or _item_id("call"),
                    "name": function.get("name") or "", "arguments": "", "status": "in_progress"}
            self.calls[index] = item
            out += self._open(item)
        elif function.get("name") and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments and item["status"] == "in_progress":
            item["arguments"] += arguments
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=self.response["output"].index(item), delta=arguments))
        return out

    def finish(self) -> list[bytes]:
        out = self._start()
        if not self.calls and not any(item["type"] == "message" for item in self.response["output"]):
            # An answer always holds a message, as the non-streamed translation's does (empty here).
            out += self._open({"type": "message", "id": _item_id("msg"), "status": "in_progress", "role": "assistant",
                               "content": [], "_text": ""})
        out += self._close_text() + self._close_calls()
        incomplete = _INCOMPLETE.get(self.finish_reason or "")
        self.response["status"] = "incomplete" if incomplete else "completed"
        if incomplete:
            self.response["incomplete_details"] = {"reason": incomplete}
        self.response["usage"] = _usage_from_chat(self.usage)
        kind = "response.incomplete" if incomplete else "response.completed"
        self.final_data = dumps({"type": kind, "sequence_number": self.sequence, "response": self.response})
        self.sequence += 1
        out.append(b"event: %s\ndata: %s\n\n" % (kind.encode(), self.final_data))
        return out

    def error(self, error_body: dict[str, Any]) -> list[bytes]:
        """A failure after the stream began, numbered in this stream: an ``error`` event, then
        ``response.failed`` carrying the same error and what was streamed so far."""
        err = error_body.get("error", error_body)
        code = err.get("code") or err.get("type") or "server_error"
        out = self._start()
        out.append(self._event("error", code=code, message=err.get("message", ""), param=None))
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": err.get("message", "")}
        out.append(self._event("response.failed", response=self.response))
        return out


def _text_only(chunk: dict[str, Any]) -> str | None:
    """The text of a chat chunk that carries nothing else ``StreamFromChat.feed`` reads (kept beside it)."""
    choices = chunk.get("choices")
    if chunk.get("usage") or type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("index", 0) != 0 or choice.get("finish_reason"):
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("reasoning"):
        return None
    text = delta.get("content")
    return text if type(text) is str and text else None


def _pending(item: dict[str, Any]) -> dict[str, Any]:
    """What an item looks like when it is announced: nothing streamed into it yet."""
    if item["type"] == "message":
        return {"content": []}
    if item["type"] == "reasoning":
        return {"summary": []}
    return {"arguments": item["arguments"]}


def error_event(error_body: dict[str, Any]) -> bytes:
    """SSE bytes for an error after streaming began, outside a stream's numbering (the stream
    adapter's ``error`` numbers it in sequence; this is for an error before any event)."""
    err = error_body.get("error", error_body)
    return encode_json({"type": "error", "code": err.get("code") or err.get("type") or "server_error",
                        "message": err.get("message", ""), "param": None, "sequence_number": 0}, event="error")
