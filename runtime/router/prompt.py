"""Router prompt, version 1: conversation selection, the filled Arch-Router template, the chat
template, and answer parsing. Pure functions (no I/O, no clock); imports jinja2 and the stdlib only.

The rules follow Arch-Router's training prompt exactly (shared notes ARCH_ROUTER.md, sections 2-5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The Arch-Router template (856 bytes) lives with the bundle format; `{routes}` is filled at build time.
from archc.bundle import ARCH_ROUTER_TEMPLATE

PROMPT_VERSION = 1

CONVERSATION_SLOT = "{conversation}"
ROUTES_SLOT = "{routes}"
OTHER = "other"
# The answer prefix we force: the model then only has to name the route.
ANSWER_PREFIX = '{"route": "'

DEFAULT_TOKEN_BUDGET = 2048
# archgw counts the template (856 bytes // 4) against the budget, but not the routes JSON.
TEMPLATE_TOKEN_ESTIMATE = 856 // 4
_DROPPED_ROLES = frozenset({"system", "developer", "tool"})


def compact_json(value: Any) -> str:
    """The serialization the model was trained on: compact separators, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_routes(routes: Iterable[tuple[str, str]]) -> str:
    """`{routes}` text: compact JSON of ``{"name", "description"}`` objects, in config order."""
    return compact_json([{"name": n, "description": d} for n, d in routes])


def fill_routes(routes: Iterable[tuple[str, str]], template: str = ARCH_ROUTER_TEMPLATE) -> str:
    """The template with ``{routes}`` filled (what the compiler stores as ``bundle.router.prompt``)."""
    return template.replace(ROUTES_SLOT, render_routes(routes))


def message_text(message: Mapping[str, Any]) -> str:
    """String content as is; array content: the ``text`` parts joined with newlines (images skipped)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def select_conversation(messages: Sequence[Mapping[str, Any]], budget: int = DEFAULT_TOKEN_BUDGET) -> list[dict[str, str]]:
    """The turns the router sees: filtered, newest first within ``budget`` estimated tokens.

    A user message that overflows the budget is still kept (and the walk stops); any other
    overflowing message is dropped. With nothing selected, the last filtered message is kept.
    """
    turns = []
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        role = m.get("role")
        if not isinstance(role, str) or role in _DROPPED_ROLES:
            continue
        text = message_text(m)
        if text:
            turns.append({"role": role, "content": text})
    selected: list[dict[str, str]] = []
    used = TEMPLATE_TOKEN_ESTIMATE
    for turn in reversed(turns):
        used += len(turn["content"].encode("utf-8")) // 4
        if used > budget:
            if turn["role"] == "user":
                selected.append(turn)
            break
        selected.append(turn)
    if not selected and turns:
        selected.append(turns[-1])
    selected.reverse()
    # archgw keeps an overflowing message whole, however large; an in-process model cannot afford
    # a 2-million-token prefill, so a message past 4x the budget in bytes keeps its head and tail.
    limit = max(budget, 1) * 4
    return [{"role": t["role"], "content": _clip(t["content"], limit)} for t in selected]


CLIP_MARKER = "\n[...]\n"


def _clip(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    half = limit // 2
    head = raw[:half].decode("utf-8", errors="ignore")
    tail = raw[len(raw) - half:].decode("utf-8", errors="ignore")
    return head + CLIP_MARKER + tail


def render_user_prompt(filled_template: str, conversation: Sequence[Mapping[str, str]]) -> str:
    """The router's user message: ``{conversation}`` replaced by the compact JSON of the turns."""
    return filled_template.replace(CONVERSATION_SLOT, compact_json([dict(t) for t in conversation]))


# -- chat template (transformers' apply_chat_template, add_generation_prompt=True) -------------

class ChatTemplateError(ValueError):
    """The checkpoint's chat template is missing, invalid, or raised while rendering."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
    # transformers overrides Jinja's tojson: no HTML escaping, json.dumps options exposed.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _special_token(value: Any) -> str | None:
    if isinstance(value, Mapping):  # AddedToken serialized as {"content": ..., ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled checkpoint chat template plus the special tokens transformers passes to it."""

    source: str
    special_tokens: Mapping[str, str]
    _compiled: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        try:
            object.__setattr__(self, "_compiled", env.from_string(self.source))
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}") from exc

    @classmethod
    def from_tokenizer_config(cls, config: Mapping[str, Any]) -> "ChatTemplate":
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: transformers uses "default"
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
            template = named.get("default")
        if not isinstance(template, str) or not template:
            raise ChatTemplateError("tokenizer_config.json has no chat_template")
        names = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
        tokens = {n: t for n in names if (t := _special_token(config.get(n))) is not None}
        return cls(template, tokens)

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True) -> str:
        try:
            return self._compiled.render(
                messages=[dict(m) for m in messages],
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from exc


@dataclass(frozen=True)
class SplitPrompt:
    """The model input as text: ``static`` (chat head + routes, cacheable) + conversation + ``tail``."""

    static: str
    tail: str

    def text(self, conversation_json: str) -> str:
        return self.static + conversation_json + self.tail


def split_prompt(chat_template: ChatTemplate, filled_template: str) -> SplitPrompt:
    """Render the chat template once around the ``{conversation}`` slot and split there.

    The tail ends with the forced answer prefix. Raises ChatTemplateError when the template
    does not keep the slot verbatim exactly once (then no static prefix can be cached).
    """
    rendered = chat_template.render([{"role": "user", "content": filled_template}])
    if rendered.count(CONVERSATION_SLOT) != 1:
        raise ChatTemplateError("chat template does not keep the {conversation} slot verbatim")
    head, tail = rendered.split(CONVERSATION_SLOT)
    return SplitPrompt(head, tail + ANSWER_PREFIX)


# -- answer parsing (archgw's cleanup, notes section 5) -----------------------------------------

@dataclass(frozen=True)
class ParsedAnswer:
    """``route`` set when the answer names a listed route; else ``fallback`` says why."""

    route: str | None
    fallback: str | None


def parse_answer(text: str, route_names: Iterable[str]) -> ParsedAnswer:
    """archgw's cleanup (' -> ", drop literal backslash-n, strip ```json fences), then parse."""
    cleaned = text.replace("'", '"').replace("\\n", "").strip()
    if cleaned.startswith("```json"):
        cleaned = cleaned[len("```json"):]
    if cleaned.endswith("```"):
        cleaned = cleaned[: -len("```")]
    try:
        data = json.loads(cleaned.strip())
    except ValueError:
        return ParsedAnswer(None, "malformed")
    if not isinstance(data, dict):
        return ParsedAnswer(None, "malformed")
    if "route" not in data:
        return ParsedAnswer(None, "malformed")
    name = data["route"]
    if name is None or name == "":
        return ParsedAnswer(None, OTHER)
    if not isinstance(name, str):
        return ParsedAnswer(None, "malformed")
    if name == OTHER:
        return ParsedAnswer(None, OTHER)
    if name not in set(route_names):
        return ParsedAnswer(None, "no_match")
    return ParsedAnswer(name, None)
