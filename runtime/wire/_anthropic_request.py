"""Anthropic Messages requests <-> OpenAI chat requests (runtime wire stage; stdlib and `runtime.*` only).

Public through `runtime.wire.anthropic_messages`, whose docstring lists the choices made where the
formats differ.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import TranslationError
from runtime.wire._anthropic_common import anthropic_tool_id, anthropic_user_id, openai_user
from runtime.wire.openai_chat import compact_json, reasoning_of, text_of

__all__ = ["DEFAULT_MAX_TOKENS", "assistant_from_openai", "parse_arguments", "reasoning_fields", "request_from_openai", "request_to_openai"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent to Anthropic when an OpenAI request names none (Anthropic requires it)."""

ERROR_PREFIX = "Error: "

OPENAI_MAX_STOPS = 4  # "Up to 4 sequences" (OpenAI chat reference, `stop`); the rest are dropped


# --- Anthropic request -> OpenAI request --------------------------------------------------


def request_to_openai(body: dict[str, Any], *, keep_reasoning: bool = True, system_in_place: bool = True) -> dict[str, Any]:
    """A validated Anthropic Messages request as an OpenAI chat request.

    ``keep_reasoning=False`` leaves out ``reasoning_content``/``reasoning_signature``/``reasoning_blocks``
    on assistant messages, for upstreams that reject unknown message fields.
    ``system_in_place=False`` folds mid-conversation system messages into the leading one
    (joined by blank lines), for chat templates that accept a system message only first.
    """
    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    messages: list[dict[str, Any]] = []
    system = _joined_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body["messages"]:
        messages.extend(_message_to_openai(message, keep_reasoning))
    if not system_in_place:
        messages = _hoist_system(messages)
    if not messages:
        kinds = sorted({str(b.get("type")) for m in body["messages"] if isinstance(m.get("content"), list)
                        for b in m["content"] if isinstance(b, dict)})
        what = f" (their content block types: {', '.join(repr(k) for k in kinds)})" if kinds else ""
        raise TranslationError("messages: the chosen model's upstream speaks OpenAI chat, which has no equivalent for any "
                               f"content block of this request{what}; send at least one text, image, document, "
                               "tool_use or tool_result block", code="untranslatable_messages")
    out["messages"] = messages
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])[:OPENAI_MAX_STOPS]
    user_id = (body.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str):
        out["user"] = openai_user(user_id)
    if body.get("stream") is not None:
        out["stream"] = body["stream"]
        if body["stream"]:
            out["stream_options"] = {"include_usage": True}
    _tools_to_openai(body, out)
    return out


def _hoist_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"]]
    rest = [m for m in messages if m["role"] != "system"]
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + rest


def _joined_text(content: Any, sep: str = "\n\n") -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _message_to_openai(message: dict[str, Any], keep_reasoning: bool) -> list[dict[str, Any]]:
    role, content = message["role"], message["content"]
    if role == "system":
        return [{"role": "system", "content": _joined_text(content)}]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if role == "assistant":
        return [_assistant_to_openai(content, keep_reasoning)]
    return _user_to_openai(content)


def _user_to_openai(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if blocks and all(len(block) == 2 and block.get("type") == "text" for block in blocks):
        # Text blocks with nothing else ({type, text}) are OpenAI text parts as they are: the same
        # list goes out (an agent's history is mostly these; nothing downstream writes to either body).
        return [{"role": "user", "content": blocks}]
    tool_messages: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        btype = block.get("type")
        if btype == "tool_result":
            text, images = _tool_result_to_openai(block)
            tool_messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            if images:
                tool_images.append({"type": "text", "text": f"Images returned by tool call {block['tool_use_id']}:"})
                tool_images.extend(images)
        else:
            part = _part_to_openai(block)
            if part is not None:
                parts.append(part)
    # Tool messages must directly follow the assistant's tool_calls, so they go first.
    out = tool_messages
    if tool_images or parts:
        out.append({"role": "user", "content": tool_images + parts})
    return out


def _part_to_openai(block: dict[str, Any]) -> dict[str, Any] | None:
    btype = block.get("type")
    if btype == "text":
        return {"type": "text", "text": block["text"]}
    if btype == "image":
        url = _image_url(block.get("source") or {})
        return {"type": "image_url", "image_url": {"url": url}} if url else None
    if btype == "document":
        return _document_to_openai(block)
    return None  # thinking in a user turn, server-tool results, search results: not carried


def _image_url(source: dict[str, Any]) -> str | None:
    if source.get("type") == "base64":
        return f"data:{source['media_type']};base64,{source['data']}"
    if source.get("type") == "url":
        return source["url"]
    return None  # Files API ids mean nothing to another provider


def _document_to_openai(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source") or {}
    stype = source.get("type")
    if stype == "base64":
        name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        return {"type": "file", "file": {"filename": name, "file_data": f"data:{source['media_type']};base64,{source['data']}"}}
    if stype == "text":
        return {"type": "text", "text": source["data"]}
    if stype == "url":
        return {"type": "text", "text": f"[document: {source['url']}]"}
    if stype == "content":
        return {"type": "text", "text": _joined_text(source.get("content"), "\n")}
    return None


def _tool_result_to_openai(block: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for inner in content:
            part = _part_to_openai(inner)
            if part is None:
                continue
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
        text = "\n".join(texts)
    else:
        text = content if isinstance(content, str) else ""
    if block.get("is_error"):
        text = ERROR_PREFIX + text
    return text, images


def _assistant_to_openai(blocks: list[dict[str, Any]], keep_reasoning: bool) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in blocks:
        btype = block.get("type")
        if btype == "text":
            texts.append(block["text"])
        elif btype == "tool_use":
            arguments = compact_json(block.get("input") or {})
            calls.append({"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}})
        elif btype in ("thinking", "redacted_thinking"):
            thinking.append(block)
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if thinking and keep_reasoning:
        message.update(reasoning_fields(thinking))
    if message["content"] is None and not calls:
        message["content"] = ""  # OpenAI requires content or tool_calls on an assistant message
    return message


def reasoning_fields(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    texts = [b["thinking"] for b in blocks if b.get("type") == "thinking"]
    fields: dict[str, Any] = {"reasoning_content": "\n".join(texts)}
    if len(blocks) == 1 and blocks[0].get("type") == "thinking":
        if isinstance(blocks[0].get("signature"), str):
            fields["reasoning_signature"] = blocks[0]["signature"]
        return fields
    kept = []
    for b in blocks:
        if b.get("type") == "thinking":
            kept.append({k: b[k] for k in ("type", "thinking", "signature") if k in b})
        else:
            kept.append({"type": "redacted_thinking", "data": b["data"]})
    fields["reasoning_blocks"] = kept
    return fields


def _tools_to_openai(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = []
    for tool in body.get("tools") or ():
        if tool.get("type") not in (None, "custom") or not isinstance(tool.get("input_schema"), dict):
            continue  # server tools (web_search, bash, text_editor...) run at Anthropic only
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = tool["input_schema"]
        tools.append({"type": "function", "function": function})
    if not tools:
        return  # OpenAI rejects tool_choice and parallel_tool_calls without tools
    out["tools"] = tools
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    ctype = choice.get("type")
    if ctype == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif ctype in ("auto", "none"):
        out["tool_choice"] = ctype
    elif ctype == "any":
        out["tool_choice"] = "required"
    if isinstance(choice.get("disable_parallel_tool_use"), bool):
        out["parallel_tool_calls"] = not choice["disable_parallel_tool_use"]


# --- OpenAI request -> Anthropic request --------------------------------------------------


def request_from_openai(body: dict[str, Any]) -> dict[str, Any]:
    """A validated OpenAI chat request as an Anthropic Messages request (see the module notes)."""
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise TranslationError("n: Anthropic returns one choice per request; n > 1 cannot be translated", code="unsupported_parameter")
    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    system, messages = _messages_from_openai(body["messages"])
    if not messages:
        raise TranslationError("messages: Anthropic needs at least one user or assistant message besides system prompts", code="untranslatable_messages")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out["max_tokens"] = max_tokens
    out["messages"] = messages
    if system:
        out["system"] = system
    if body.get("temperature") is not None:
        out["temperature"] = min(body["temperature"], 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    stops = [s for s in stops if s.strip()]  # Anthropic rejects whitespace-only stop sequences
    if stops:
        out["stop_sequences"] = stops
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": anthropic_user_id(body["user"])}
    if body.get("stream") is not None:
        out["stream"] = body["stream"]
    _tools_from_openai(body, out)
    return out


def _messages_from_openai(source: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    tool_turn: list[dict[str, Any]] | None = None  # the user turn collecting tool results
    for i, message in enumerate(source):
        role = message["role"]
        if role in ("system", "developer"):
            text = text_of(message)
            if text:
                system.append(text)
            continue
        if role == "tool":
            block = _tool_result_from_openai(message)
            if tool_turn is None or (tool_turn and tool_turn[-1].get("type") != "tool_result"):
                tool_turn = [block]
                messages.append({"role": "user", "content": tool_turn})
            else:
                tool_turn.append(block)
            continue
        if role == "user" and tool_turn is not None and tool_turn and tool_turn[-1].get("type") == "tool_result":
            tool_turn.extend(_user_blocks_from_openai(message.get("content"), i))
            continue
        tool_turn = None
        if role == "assistant":
            converted = assistant_from_openai(message)
            if converted is not None:
                messages.append(converted)
        elif role == "function":  # legacy function results have no call id to pair with
            messages.append({"role": "user", "content": f"[function {message.get('name')} returned] {message.get('content') or ''}"})
        else:
            content = message.get("content")
            content = content if isinstance(content, str) else _user_blocks_from_openai(content, i)
            if content:  # a turn of only audio or file ids has nothing Anthropic can carry
                messages.append({"role": "user", "content": content})
    return "\n\n".join(system), messages


# OpenAI user content part types; the ones Anthropic cannot carry (audio, file ids) are left out
# on purpose, an unknown one is refused: dropping it silently would change the prompt.
_USER_PART_TYPES = frozenset({"text", "image_url", "file", "input_audio"})


def _user_blocks_from_openai(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content or ()):
        if part.get("type") not in _USER_PART_TYPES:
            raise TranslationError(f"messages[{index}].content[{j}].type: {part.get('type')!r} is not an OpenAI content part type "
                                   f"the Anthropic format can carry (expected one of 'text', 'image_url', 'file', 'input_audio')",
                                   code="untranslatable_content")
        block = _block_from_openai(part)
        if block is not None:
            blocks.append(block)
    return blocks


def _block_from_openai(part: dict[str, Any]) -> dict[str, Any] | None:
    ptype = part.get("type")
    if ptype == "text":  # Anthropic rejects empty text blocks
        return {"type": "text", "text": part["text"]} if part["text"] else None
    if ptype == "image_url":
        url = part["image_url"]["url"]
        data = _parse_data_url(url)
        if data is not None:
            return {"type": "image", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    if ptype == "file":
        data = _parse_data_url((part.get("file") or {}).get("file_data") or "")
        if data is not None:
            block = {"type": "document", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
            filename = part["file"].get("filename")
            if isinstance(filename, str) and filename != "document.pdf":
                block["title"] = filename
            return block
    return None  # audio, file ids: Anthropic cannot carry them


def _parse_data_url(url: Any) -> tuple[str, str] | None:
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")] or "application/octet-stream", data


def _tool_result_from_openai(message: dict[str, Any]) -> dict[str, Any]:
    text = text_of(message)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": anthropic_tool_id(message.get("tool_call_id"), "toolu_missing")}
    if text.startswith(ERROR_PREFIX):
        block["is_error"] = True
        text = text[len(ERROR_PREFIX) :]
    block["content"] = text
    return block


def assistant_from_openai(message: dict[str, Any], *, signed_only: bool = True) -> dict[str, Any] | None:
    """An OpenAI assistant message as an Anthropic one (None when nothing is left). Reasoning
    without a signature is kept only with ``signed_only=False`` (responses, for display)."""
    blocks = _thinking_from_openai(message, signed_only)
    content = message.get("content")
    texts = [content] if isinstance(content, str) else [p.get("text") or p.get("refusal") or "" for p in content or ()]
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        texts.append(message["refusal"])
    blocks.extend({"type": "text", "text": t} for t in texts if t)
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        blocks.append({
            "type": "tool_use",
            "id": anthropic_tool_id(call.get("id"), f"toolu_missing_{i}"),
            "name": function.get("name", ""),
            "input": parse_arguments(function.get("arguments")),
        })
    if not blocks:
        return None  # Anthropic rejects empty assistant turns; there is nothing to lose
    if len(blocks) == 1 and blocks[0]["type"] == "text" and isinstance(content, str):
        return {"role": "assistant", "content": content}
    return {"role": "assistant", "content": blocks}


def _thinking_from_openai(message: dict[str, Any], signed_only: bool) -> list[dict[str, Any]]:
    kept = message.get("reasoning_blocks")
    if isinstance(kept, list) and kept:
        return [dict(b) for b in kept if isinstance(b, dict)]
    reasoning = reasoning_of(message)
    signature = message.get("reasoning_signature")
    if not reasoning or (signed_only and not (isinstance(signature, str) and signature)):
        # Anthropic rejects a thinking block in a request without Claude's signature, so
        # another model's reasoning (DeepSeek's reasoning_content) cannot be sent back to it.
        return []
    block: dict[str, Any] = {"type": "thinking", "thinking": reasoning}
    if isinstance(signature, str):
        block["signature"] = signature
    return [block]


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call ``arguments`` text -> Anthropic ``input``: "" -> {}; not a JSON object -> ``{"_raw": text}``."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def _tools_from_openai(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = []
    for tool in body.get("tools") or ():
        if tool.get("type") != "function":
            continue  # custom/grammar tools have no Anthropic counterpart
        function = tool["function"]
        converted: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            converted["description"] = function["description"]
        parameters = function.get("parameters")
        converted["input_schema"] = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
        tools.append(converted)
    if not tools:
        return
    out["tools"] = tools
    choice = body.get("tool_choice")
    converted_choice: dict[str, Any] | None = None
    if choice in ("auto", "none"):
        converted_choice = {"type": choice}
    elif choice == "required":
        converted_choice = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        converted_choice = {"type": "tool", "name": choice["function"]["name"]}
    parallel = body.get("parallel_tool_calls")
    if isinstance(parallel, bool) and (converted_choice is not None or not parallel):
        converted_choice = converted_choice or {"type": "auto"}
        if converted_choice["type"] != "none":
            converted_choice["disable_parallel_tool_use"] = not parallel
    if converted_choice is not None:
        out["tool_choice"] = converted_choice
