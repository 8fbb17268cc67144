"""The built-in `echo` upstream: answers in OpenAI chat format with the decision it received.

Stage: upstream (in-process stand-in for a provider; used by the no-API-key demo and `--echo`).
Pure: request body + Choice in, OpenAI chat response (or its SSE chunks) out. Imports runtime.decide only.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from runtime.decide.choose import Choice
from runtime.wire.tokens import prompt_tokens, text_tokens

_CREATED = 0  # a fixed timestamp keeps echo answers deterministic


def describe(choice: Choice) -> str:
    """The text the echo upstream answers: what the gateway decided for this request."""
    parts = [f"route={choice.route or 'none'}", f"model={choice.provider.name}", f"why={choice.why}"]
    if choice.fallback:
        parts.append(f"fallback={choice.fallback}")
    if choice.requested:
        parts.append(f"requested={choice.requested}")
    return "[archc echo] " + " ".join(parts)


def _usage(body: Mapping[str, Any], text: str) -> dict[str, int]:
    prompt, completion = prompt_tokens(body), text_tokens(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def response(body: Mapping[str, Any], choice: Choice) -> dict[str, Any]:
    """A non-streamed OpenAI chat completion answering ``body``."""
    text = describe(choice)
    return {
        "id": "chatcmpl-archc-echo",
        "object": "chat.completion",
        "created": _CREATED,
        "model": choice.provider.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _usage(body, text),
    }


def stream(body: Mapping[str, Any], choice: Choice) -> list[bytes]:
    """The same answer as OpenAI chat SSE bytes: role, content in words, finish, usage, [DONE]."""
    text = describe(choice)
    model = choice.provider.model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-archc-echo", "object": "chat.completion.chunk", "created": _CREATED, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    words = text.split(" ")
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    chunks.append(chunk({}, "stop"))
    chunks.append({**chunk({}), "choices": [], "usage": _usage(body, text)})
    return [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
