"""Token estimates where no tokenizer is at hand: the one rule of the whole runtime (wire stage;
stdlib only).

About 4 characters per token, archgw's own estimate: used for token rate limits before the call,
for ``/v1/messages/count_tokens`` and for the echo upstream's usage. Every string in the prompt
counts (text, roles, tool schemas), so the estimate never undercounts what a provider bills.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "PROMPT_KEYS", "prompt_tokens", "text_tokens"]

CHARS_PER_TOKEN = 4
# Where a request of any served API (chat, messages, responses; and legacy completions) carries its prompt.
PROMPT_KEYS = ("messages", "system", "tools", "prompt", "input", "instructions")


def text_tokens(text: str) -> int:
    """Tokens in ``text``: its characters / 4, rounded up; at least 1."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def prompt_tokens(body: Any) -> int:
    """Prompt tokens of a request body: characters / 4 over every string under ``PROMPT_KEYS``,
    rounded up; at least 1 (also for a body that is not an object)."""
    if not isinstance(body, dict):
        return 1
    chars = 0
    stack: list[Any] = [body.get(k) for k in PROMPT_KEYS]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))
