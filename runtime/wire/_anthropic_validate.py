"""Shape checks for Anthropic Messages requests (runtime wire stage; stdlib and `runtime.errors` only).

Public through `runtime.wire.anthropic_messages.validate_request`.
"""

from __future__ import annotations

from typing import Any

from runtime.wire._check import MISSING, array, each, fail, kind, obj, one_of, opt_bool, opt_int, opt_number, opt_string, string

__all__ = ["validate_request"]

ROLES = ("user", "assistant", "system")
TOOL_CHOICES = ("auto", "any", "tool", "none")


def validate_request(body: object, *, require_max_tokens: bool = True) -> dict[str, Any]:
    """Check a Messages request's shape and return it unchanged.

    Raises InvalidRequest naming the first bad field (``messages[1].content[0].source.data:
    missing (expected string)``). Unknown top-level fields (Claude Code sends
    ``context_management``, ``output_config``...) and unknown block types (server tools, search
    results) are allowed. ``require_max_tokens=False`` suits ``/v1/messages/count_tokens``.
    """
    if not isinstance(body, dict):
        fail("request body", f"expected a JSON object, got {kind(body)}")
    opt_string(body, "model", "")
    if require_max_tokens and body.get("max_tokens") is None:
        fail("max_tokens", "missing (expected an integer >= 1)")
    opt_int(body, "max_tokens", "", minimum=1)
    messages = array(body.get("messages", MISSING), "messages", non_empty=True)
    for message in messages:  # an agent's history is mostly text: such a message is checked inline
        if not _plain(message):
            each(messages, "messages", _check_message)
            break
    _check_system(body.get("system"))
    opt_bool(body, "stream", "")
    opt_number(body, "temperature", "", low=0, high=1)
    opt_number(body, "top_p", "", low=0, high=1)
    opt_int(body, "top_k", "", minimum=0)
    if body.get("stop_sequences") is not None:
        for i, stop in enumerate(array(body["stop_sequences"], "stop_sequences")):
            string(stop, f"stop_sequences[{i}]")
    if body.get("metadata") is not None:
        opt_string(obj(body["metadata"], "metadata"), "user_id", "metadata.")
    _check_tools(body)
    if body.get("thinking") is not None:
        thinking = obj(body["thinking"], "thinking")
        string(thinking.get("type", MISSING), "thinking.type")
        opt_int(thinking, "budget_tokens", "thinking.", minimum=0)
    return body


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        fail("system", f"expected string or array of text blocks, got {kind(system)}")
    each(system, "system", _check_system_block)


def _plain(message: Any) -> bool:
    """True for a message that ``_check_message`` would pass and that holds only a string or text
    blocks: ``{role, content}`` with a known role (an empty block list only for the assistant)."""
    if type(message) is not dict or message.get("role") not in ROLES:  # a tuple: unhashable roles fall through
        return False
    content = message.get("content")
    if type(content) is str:
        return True
    if type(content) is not list or (not content and message["role"] != "assistant"):
        return False
    for block in content:
        if type(block) is not dict or block.get("type") != "text" or type(block.get("text")) is not str:
            return False
    return True


# Items of a list are checked with paths relative to the item (``_check.each`` adds ``[i]``).


def _check_system_block(block: Any) -> None:
    block = obj(block, "")
    if block.get("type") != "text":
        fail(".type", f"expected 'text', got {block.get('type', MISSING)!r}")
    string(block.get("text", MISSING), ".text")


def _check_message(message: Any) -> None:
    message = obj(message, "")
    if "role" not in message:
        fail(".role", "missing (expected one of 'user', 'assistant', 'system')")
    one_of(message["role"], ROLES, ".role")
    content = message.get("content", MISSING)
    if isinstance(content, str):
        return
    if content is MISSING:
        fail(".content", "missing (expected string or array of content blocks)")
    if not isinstance(content, list):
        fail(".content", f"expected string or array of content blocks, got {kind(content)}")
    if not content and message["role"] != "assistant":  # only an assistant prefill may be empty
        fail(".content", "expected a non-empty array of content blocks")
    each(content, ".content", _check_block)


def _check_block(block: Any) -> None:
    block = obj(block, "")
    btype = string(block.get("type", MISSING), ".type")
    checker = _BLOCK_CHECKS.get(btype)
    if checker is not None:
        checker(block)


def _check_text(block: dict[str, Any]) -> None:
    string(block.get("text", MISSING), ".text")


def _check_source(block: dict[str, Any]) -> None:
    source = obj(block.get("source", MISSING), ".source")
    stype = string(source.get("type", MISSING), ".source.type")
    if stype == "base64":
        string(source.get("media_type", MISSING), ".source.media_type")
        string(source.get("data", MISSING), ".source.data")
    elif stype == "url":
        string(source.get("url", MISSING), ".source.url")
    elif stype == "text":
        string(source.get("data", MISSING), ".source.data")
    elif stype == "file":
        string(source.get("file_id", MISSING), ".source.file_id")
    elif stype == "content":
        content = source.get("content", MISSING)
        if not isinstance(content, str):
            each(array(content, ".source.content"), ".source.content", _check_block)


def _check_tool_use(block: dict[str, Any]) -> None:
    string(block.get("id", MISSING), ".id")
    string(block.get("name", MISSING), ".name")
    obj(block.get("input", MISSING), ".input")


def _check_tool_result(block: dict[str, Any]) -> None:
    string(block.get("tool_use_id", MISSING), ".tool_use_id")
    opt_bool(block, "is_error", ".")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        fail(".content", f"expected string or array of content blocks, got {kind(content)}")
    each(content, ".content", _check_block)


def _check_thinking(block: dict[str, Any]) -> None:
    string(block.get("thinking", MISSING), ".thinking")
    opt_string(block, "signature", ".")


def _check_redacted(block: dict[str, Any]) -> None:
    string(block.get("data", MISSING), ".data")


_BLOCK_CHECKS = {
    "text": _check_text,
    "image": _check_source,
    "document": _check_source,
    "tool_use": _check_tool_use,
    "tool_result": _check_tool_result,
    "thinking": _check_thinking,
    "redacted_thinking": _check_redacted,
}


def _check_tools(body: dict[str, Any]) -> None:
    if body.get("tools") is not None:
        each(array(body["tools"], "tools"), "tools", _check_tool)
    choice = body.get("tool_choice")
    if choice is None:
        return
    choice = obj(choice, "tool_choice")
    ctype = one_of(choice.get("type", MISSING), TOOL_CHOICES, "tool_choice.type")
    if ctype == "tool":
        string(choice.get("name", MISSING), "tool_choice.name")
    opt_bool(choice, "disable_parallel_tool_use", "tool_choice.")


def _check_tool(tool: Any) -> None:
    tool = obj(tool, "")
    string(tool.get("name", MISSING), ".name")
    opt_string(tool, "description", ".")
    opt_string(tool, "type", ".")
    if tool.get("type") in (None, "custom"):
        obj(tool.get("input_schema", MISSING), ".input_schema")
