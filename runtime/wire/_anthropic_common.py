"""Anthropic <-> OpenAI mapping tables shared by the request, response and stream translations.

Runtime wire stage; pure, imports only the stdlib and `runtime.errors`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from runtime.errors import UpstreamError

# What indexing into an upstream payload of the wrong shape raises; mapped to UpstreamError.
SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)


def malformed(what: str, exc: BaseException) -> UpstreamError:
    """The error for an upstream payload that is JSON but not the vendor's shape (never a 500)."""
    return UpstreamError(f"the upstream sent {what} of an unexpected shape ({type(exc).__name__})")

# Anthropic stop_reason -> OpenAI finish_reason ("Handling stop reasons", Anthropic docs).
FINISH_BY_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
# OpenAI finish_reason -> Anthropic stop_reason. OpenAI does not say which stop string matched,
# so "stop" is always end_turn.
STOP_BY_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic stream error types -> HTTP status, so a mid-stream upstream error keeps its meaning.
STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

# Anthropic tool_use ids must match ^[a-zA-Z0-9_-]+$; OpenAI-compatible servers are looser.
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def anthropic_tool_id(raw: Any, fallback: str) -> str:
    """A tool id Anthropic accepts: disallowed characters become "_"; empty ids get ``fallback``.
    The same raw id always maps to the same result, so tool_use and tool_result still match."""
    if not isinstance(raw, str) or not raw:
        return fallback
    return _BAD_ID_CHARS.sub("_", raw)


def openai_id_from(anthropic_id: Any) -> str:
    """``msg_X`` -> ``chatcmpl-X`` (deterministic, so a stream's chunks share one id)."""
    suffix = anthropic_id.removeprefix("msg_") if isinstance(anthropic_id, str) and anthropic_id else "archc"
    return f"chatcmpl-{suffix}"


def anthropic_id_from(openai_id: Any) -> str:
    """``chatcmpl-X`` -> ``msg_X``."""
    suffix = openai_id.removeprefix("chatcmpl-") if isinstance(openai_id, str) and openai_id else "archc"
    return "msg_" + _BAD_ID_CHARS.sub("_", suffix)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_to_openai(usage: Any) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage. Anthropic's input_tokens excludes cache reads and cache
    writes; OpenAI's prompt_tokens includes them, with reads in prompt_tokens_details.cached_tokens."""
    usage = usage if isinstance(usage, dict) else {}
    read = _int(usage.get("cache_read_input_tokens"))
    created = _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + read + created
    completion = _int(usage.get("output_tokens"))
    details: dict[str, int] = {"cached_tokens": read}
    if created:
        details["cache_write_tokens"] = created  # OpenAI's own field for cache writes
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, "prompt_tokens_details": details}


def usage_from_openai(usage: Any) -> dict[str, int]:
    """OpenAI usage -> Anthropic usage (the inverse of ``usage_to_openai``)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    read = _int(details.get("cached_tokens"))
    created = _int(details.get("cache_write_tokens"))
    return {
        "input_tokens": max(_int(usage.get("prompt_tokens")) - read - created, 0),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    }


# OpenAI rejects a `user` over 64 characters (Claude Code's metadata.user_id is a ~150-character
# JSON string); Anthropic rejects a user_id over 256 characters or one that looks like an email
# address or phone number ("metadata.user_id" in the Messages reference). Such ids are replaced
# by their SHA-256 hex digest: still a stable, opaque per-user id.
_OPENAI_USER_MAX = 64
_ANTHROPIC_USER_MAX = 256
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def openai_user(user_id: str) -> str:
    """An Anthropic ``metadata.user_id`` as an OpenAI ``user``."""
    return user_id if len(user_id) <= _OPENAI_USER_MAX else _digest(user_id)


def anthropic_user_id(user: str) -> str:
    """An OpenAI ``user`` as an Anthropic ``metadata.user_id``."""
    if len(user) > _ANTHROPIC_USER_MAX or "@" in user or _PHONE.match(user):
        return _digest(user)
    return user
