"""The router on a server: Arch-Router decisions from a model served elsewhere (vLLM, Ollama,
llama.cpp's server, SGLang) over its OpenAI-compatible chat API, or its completions API with the
prompt rendered here through the served checkpoint's chat template (``routing.remote_api:
completions``, for servers that take a raw prompt).

Stage: runtime router. Imports the stdlib, orjson and runtime.router.{prompt,decision}; the HTTP
call is a ``send`` function the app gives it (runtime/app.py: the provider's URL, key, proxy and
trust, on a connection pool of its own), so this module never imports the upstream stage.

The same decision as the in-process backend (runtime/router/service.py): the conversation selected
by the same rules, the same user message (the filled Arch-Router template; no system message),
the answer parsed by the same cleanup, the same fallbacks and ``routing.timeout_ms`` (the call is
cancelled at the deadline). Confidence comes from the server's logprobs where it sends them (the
probability of the chosen name's first token among the first tokens of the allowed names, as the
in-process backend measures it); without them it is None and no threshold applies.

Circuit breaking: after ``failures_to_open`` calls in a row fail (error status, unreachable, timeout,
an answer that is not a chat completion) the router is skipped, fallback ``router_unavailable``,
for a cool-down that doubles on each failed probe (up to ``max_cooldown_s``); then one request
probes it, and a success closes the circuit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

import orjson

from runtime.router import prompt as rp
from runtime.router.decision import Decision, elapsed_ms, thresholded

log = logging.getLogger("archc.router")

Send = Callable[[bytes], Awaitable[Any]]  # POST a JSON body to the router's server; its parsed answer (raises on failure)

MAX_TOKENS = 32  # {"route": "<name>"} and a little room: names are short
TOP_LOGPROBS = 20


@dataclass
class Breaker:
    """Consecutive failures open the circuit; after a cool-down one probe may pass; a success closes it."""

    failures_to_open: int = 3
    cooldown_s: float = 1.0
    max_cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    open_until: float | None = None  # set while open
    probing: bool = False
    current_cooldown: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.current_cooldown = self.cooldown_s

    @property
    def state(self) -> str:
        if self.open_until is None:
            return "closed"
        return "half_open" if self.probing or self.clock() >= self.open_until else "open"

    def allow(self) -> bool:
        if self.open_until is None:
            return True
        if self.probing or self.clock() < self.open_until:
            return False
        self.probing = True  # this caller is the probe; the others keep falling back until it answers
        return True

    def success(self) -> None:
        self.failures, self.open_until, self.probing = 0, None, False
        self.current_cooldown = self.cooldown_s

    def failure(self) -> None:
        self.failures += 1
        if self.probing:  # the probe failed: open again, for longer
            self.current_cooldown = min(self.current_cooldown * 2, self.max_cooldown_s)
        elif self.failures < self.failures_to_open:
            return
        self.probing = False
        self.open_until = self.clock() + self.current_cooldown


class RemoteRouter:
    """RouterService over a server's chat API. ``where`` names it in logs and ``/readyz`` (its URL)."""

    def __init__(self, send: Send, *, model: str, prompt: str, route_names: Sequence[str], timeout_ms: int,
                 token_budget: int, confidence_threshold: float | None, where: str, logprobs: bool = True,
                 breaker: Breaker | None = None, close: Callable[[], Awaitable[None]] | None = None,
                 chat_template: rp.ChatTemplate | None = None) -> None:
        self.send = send
        self.chat_template = chat_template  # set: the completions form (``send`` posts to /v1/completions)
        self.model = model
        self.prompt = prompt
        self.route_names = tuple(route_names)
        self.timeout_ms = timeout_ms
        self.token_budget = token_budget
        self.confidence_threshold = confidence_threshold
        self.where = where
        self.logprobs = logprobs
        self.breaker = breaker or Breaker()
        self._close = close

    def body(self, conversation: Sequence[Mapping[str, str]]) -> bytes:
        """The chat request: one user message holding the filled template (as archgw sends it), greedy.
        The completions form: that message rendered through the chat template with the generation
        prompt (what the server would have rendered), as ``prompt``."""
        user = {"role": "user", "content": rp.render_user_prompt(self.prompt, conversation)}
        body: dict[str, Any] = {"model": self.model, "stream": False, "temperature": 0, "max_tokens": MAX_TOKENS}
        if self.chat_template is not None:
            body["prompt"] = self.chat_template.render([user])
            if self.logprobs:
                body["logprobs"] = TOP_LOGPROBS  # the completions API: how many alternatives per token
            return orjson.dumps(body)
        body["messages"] = [user]
        if self.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        return orjson.dumps(body)

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        start = time.monotonic()
        try:
            conversation = rp.select_conversation(messages, self.token_budget)
        except Exception:  # the router never fails a request: odd input is an error fallback
            log.exception("router: conversation selection failed")
            return Decision(None, "error")
        if not conversation:
            return Decision(None, "empty_conversation")
        if not self.breaker.allow():
            return Decision(None, "router_unavailable")
        try:
            answer = await asyncio.wait_for(self.send(self.body(conversation)), max(self.timeout_ms, 0) / 1000)
        except (asyncio.TimeoutError, TimeoutError):
            self._failed(f"no answer within routing.timeout_ms ({self.timeout_ms} ms)")
            return Decision(None, "timeout", router_ms=elapsed_ms(start))
        except Exception as exc:  # unreachable, an error status, a body that is not JSON: a fallback, never a failed request
            self._failed(f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
            return Decision(None, "error", router_ms=elapsed_ms(start))
        text, tokens, usage = _completion(answer) if self.chat_template is None else _text_completion(answer)
        if text is None:  # the server's fault, not the model's: an error (never cached), and it counts against the circuit
            self._failed("its answer is not a chat completion with a message" if self.chat_template is None
                         else "its answer is not a text completion (choices[0].text)")
            return Decision(None, "error", router_ms=elapsed_ms(start))
        self.breaker.success()
        parsed = rp.parse_answer(text, self.route_names)
        confidence, probabilities = first_token_confidence(tokens, text, parsed.route or rp.OTHER, self.route_names)
        route, fallback = thresholded(parsed.route, parsed.fallback, confidence, self.confidence_threshold)
        return Decision(route, fallback, confidence, elapsed_ms(start), usage[1], False, probabilities, usage[0], text, False)

    def _failed(self, why: str) -> None:
        was = self.breaker.state
        self.breaker.failure()
        if self.breaker.state == "open" and was != "open":
            log.warning("router at %s failed (%s): skipped for %.1f s, requests fall back (router_unavailable)",
                        self.where, why, self.breaker.current_cooldown)
        else:
            log.warning("router at %s failed: %s", self.where, why)

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


def _completion(answer: Any) -> tuple[str | None, list[Any], tuple[int, int]]:
    """(message text, the logprobs' token entries, (prompt, completion) tokens) of a chat completion;
    text None when it is not one."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, [], (0, 0)
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        return None, [], (0, 0)
    logprobs = choices[0].get("logprobs")
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    counts = tuple(v if isinstance(v, int) and not isinstance(v, bool) else 0
                   for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")))
    return text, tokens if isinstance(tokens, list) else [], counts  # type: ignore[return-value]


def _text_completion(answer: Any) -> tuple[str | None, list[Any], tuple[int, int]]:
    """``_completion`` for the completions API: ``choices[0].text``, and its logprobs (parallel lists
    ``tokens``, ``token_logprobs``, ``top_logprobs`` of {token: logprob}) as the chat API's entries."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, [], (0, 0)
    text = choices[0].get("text")
    if not isinstance(text, str):
        return None, [], (0, 0)
    logprobs = choices[0].get("logprobs")
    entries: list[Any] = []
    if isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list):
        chosen, tops = logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
        for i, token in enumerate(logprobs["tokens"]):
            entry: dict[str, Any] = {"token": token}
            if isinstance(chosen, list) and i < len(chosen):
                entry["logprob"] = chosen[i]
            top = tops[i] if isinstance(tops, list) and i < len(tops) else None
            if isinstance(top, dict):
                entry["top_logprobs"] = [{"token": t, "logprob": lp} for t, lp in top.items()]
            entries.append(entry)
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    counts = tuple(v if isinstance(v, int) and not isinstance(v, bool) else 0
                   for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")))
    return text, entries, counts  # type: ignore[return-value]


def first_token_confidence(tokens: Sequence[Any], text: str, chosen: str,
                           route_names: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """From the server's logprobs: the probability of ``chosen``'s first token among the candidates at
    that position that begin an allowed name (the routes and ``other``), and each allowed name's share.
    (None, {}) when the logprobs are missing or do not line up with ``text``."""
    at = text.find(f'"{chosen}"')
    if not tokens or at < 0:
        return None, {}
    start = at + 1  # the name's first character
    offset = 0
    for entry in tokens:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None, {}
        token = entry["token"]
        if offset + len(token) > start:
            inside = start - offset  # where the name begins within this token
            return _shares(entry, token[:inside], chosen, (*route_names, rp.OTHER))
        offset += len(token)
    return None, {}


def _shares(entry: Mapping[str, Any], lead: str, chosen: str, names: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """Each candidate token at the name's position (the sampled one and its top alternatives) that starts
    with ``lead`` and continues into an allowed name counts for every name it begins."""
    candidates: dict[str, float] = {}
    for alt in [entry, *(entry.get("top_logprobs") or [])]:
        if isinstance(alt, dict) and isinstance(alt.get("token"), str) and isinstance(alt.get("logprob"), (int, float)):
            candidates.setdefault(alt["token"], math.exp(alt["logprob"]) if alt["logprob"] > -1e9 else 0.0)
    per_name: dict[str, float] = {}
    for token, p in candidates.items():
        if not token.startswith(lead) or len(token) == len(lead):
            continue
        piece = token[len(lead):]
        for name in names:
            if name.startswith(piece) or piece.startswith(f"{name}\""):
                per_name[name] = per_name.get(name, 0.0) + p
    total = sum(candidates[t] for t in candidates
                if t.startswith(lead) and len(t) > len(lead) and any(n.startswith(t[len(lead):]) or t[len(lead):].startswith(f"{n}\"") for n in names))
    if total <= 0 or chosen not in per_name:
        return None, {}
    shares = {name: round(p / total, 6) for name, p in per_name.items()}
    return shares[chosen], shares
