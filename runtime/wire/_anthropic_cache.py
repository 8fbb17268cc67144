"""Prompt-cache breakpoints for an Anthropic Messages request (runtime wire stage; stdlib and
`runtime.wire.tokens` only). Public through `runtime.wire.anthropic_messages.with_cache_breakpoints`.

Plano 0.4's ``prompt_caching.inject_cache_control``: a request that reaches an Anthropic upstream
without any ``cache_control`` of its own gets ``{"type": "ephemeral"}`` on the last block of its
stable prefix (the system text, else the last tool: Anthropic caches tools, then system, then
messages, in that order) and on the last block of its last message (the conversation so far, which
the next turn of an agent resends and extends), each only when what it closes is at least
``min_prefix_tokens`` (estimated, runtime/wire/tokens.py): below a model's minimum, Anthropic ignores
a breakpoint. A request that marks any block itself is left as it is (its client manages its cache,
as Claude Code does; and Anthropic refuses more than four breakpoints). The client's body is never
written to: the touched parts are copied.
"""

from __future__ import annotations

from typing import Any

from runtime.wire.tokens import prompt_tokens

__all__ = ["DEFAULT_MIN_PREFIX_TOKENS", "with_cache_breakpoints"]

DEFAULT_MIN_PREFIX_TOKENS = 1024  # Anthropic's smallest cacheable prefix (Sonnet, Opus 4.1 and before)
_EPHEMERAL = {"type": "ephemeral"}


def _marked(blocks: Any) -> bool:
    return isinstance(blocks, list) and any(isinstance(b, dict) and "cache_control" in b for b in blocks)


def _has_breakpoints(body: dict[str, Any]) -> bool:
    if _marked(body.get("system")) or _marked(body.get("tools")):
        return True
    return any(isinstance(m, dict) and _marked(m.get("content")) for m in body.get("messages") or [])


def _mark_last(blocks: Any) -> list[Any] | None:
    """``blocks`` (a string, or a list of content blocks) with the breakpoint on its last block; None
    when there is no block to mark (an empty list, a last block that is not an object)."""
    if isinstance(blocks, str):
        return [{"type": "text", "text": blocks, "cache_control": _EPHEMERAL}] if blocks else None
    if not isinstance(blocks, list) or not blocks or not isinstance(blocks[-1], dict):
        return None
    if blocks[-1].get("type") in ("thinking", "redacted_thinking"):
        return None  # Anthropic refuses cache_control on thinking blocks
    return [*blocks[:-1], {**blocks[-1], "cache_control": _EPHEMERAL}]


def with_cache_breakpoints(body: dict[str, Any], min_prefix_tokens: int = DEFAULT_MIN_PREFIX_TOKENS) -> tuple[dict[str, Any], list[str]]:
    """``body`` with breakpoints where they pay, and where they were put (``system``, ``tools``,
    ``messages``); ``body`` itself and ``[]`` when none was added."""
    if _has_breakpoints(body):
        return body, []
    out = body
    where: list[str] = []
    stable = prompt_tokens({"system": body.get("system"), "tools": body.get("tools")})
    if stable >= min_prefix_tokens:
        system = _mark_last(body.get("system"))
        if system is not None:
            out, where = {**out, "system": system}, ["system"]
        else:
            tools = _mark_last(body.get("tools"))
            if tools is not None:
                out, where = {**out, "tools": tools}, ["tools"]
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict) and prompt_tokens(body) >= min_prefix_tokens:
        content = _mark_last(messages[-1].get("content"))
        if content is not None:
            out = {**out, "messages": [*messages[:-1], {**messages[-1], "content": content}]}
            where.append("messages")
    return out, where
