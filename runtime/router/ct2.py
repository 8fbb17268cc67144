"""The CTranslate2 router backend: Arch-Router in-process, with a cached route-table prefix,
a forced answer prefix and early-stopping decoding over the route-name trie.

Stage: runtime router. The only runtime module that imports ctranslate2 (with convert.py);
also imports numpy, tokenizers and runtime.router.{prompt,backend}.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import ctranslate2
import numpy as np
from tokenizers import Tokenizer

from runtime.router import prompt as rp
from runtime.router.decision import RawDecision
from runtime.router.backend import METHOD_FAST, METHOD_NAIVE, METHODS, Conversation

# Longest answer generated (naive method), and how far past the longest name the fast method lets
# an off-list answer run before parsing what it has (enough for `name"}` and eos).
MAX_ANSWER_TOKENS = 24
OFF_LIST_TOKENS = 8


class ModelLoadError(RuntimeError):
    """The router model directory cannot be loaded (message names the path)."""


@dataclass(frozen=True)
class Ct2Options:
    """How the backend runs. ``replicas`` parallel generators share the cores (``inter_threads``);
    ``threads`` is OpenMP threads per replica (0 = CTranslate2's default)."""

    device: str = "auto"
    compute_type: str | None = None
    replicas: int = 1
    threads: int = 0
    method: str = METHOD_FAST
    constrain: bool = False  # True: force a listed name even when the model prefers another answer
    max_answer_tokens: int = MAX_ANSWER_TOKENS


def resolve_device(device: str, compute_type: str | None) -> tuple[str, str]:
    """``auto`` -> cuda when a GPU is visible, else cpu; default compute types int8 / int8_float16."""
    if device not in ("auto", "cpu", "cuda"):
        raise ModelLoadError(f"router device {device!r}: expected auto, cpu or cuda")
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return device, compute_type or ("int8_float16" if device == "cuda" else "int8")


@dataclass
class _Node:
    children: dict[int, "_Node"] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def _build_trie(tokenizer: Tokenizer, names: Sequence[str]) -> _Node:
    # Each name's tokens as the model writes them after the forced prefix: tokenize the whole
    # answer and drop the prefix's tokens (the prefix ends with ` "`, a pre-token boundary).
    prefix = tokenizer.encode(rp.ANSWER_PREFIX, add_special_tokens=False).ids
    root = _Node()
    for name in names:
        ids = tokenizer.encode(rp.ANSWER_PREFIX + name + '"}', add_special_tokens=False).ids
        ids = ids[len(prefix):] if ids[: len(prefix)] == prefix else tokenizer.encode(name + '"}', add_special_tokens=False).ids
        node = root
        node.names.append(name)
        for i in ids:
            node = node.children.setdefault(i, _Node())
            node.names.append(name)
    return root


def _host_logits(view: Any) -> np.ndarray:
    """A step's vocabulary logits as a float32 numpy vector (copied off the GPU when needed)."""
    if view.dtype != ctranslate2.DataType.float32:
        view = view.to(ctranslate2.DataType.float32)  # float16/bfloat16 logits on CUDA
    if str(view.device) != "cpu":
        view = view.to_device(ctranslate2.Device.cpu)
    return np.asarray(view).reshape(-1)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on (cgroups, taskset)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=-1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z)
    return e / e.sum()


@dataclass
class _Walk:
    """Per-example decoding state, updated from CTranslate2's step callback."""

    deadline: float
    node: _Node
    ids: list[int] = field(default_factory=list)
    path: list[_Node] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    unique: str | None = None
    off_list: bool = False
    timed_out: bool = False


class Ct2Backend:
    """Arch-Router on CTranslate2. Thread-safe: CTranslate2 queues calls onto its replicas."""

    def __init__(self, model_dir: Path, filled_prompt: str, route_names: Sequence[str], options: Ct2Options = Ct2Options()) -> None:
        model_dir = Path(model_dir)
        if options.method not in METHODS:
            raise ModelLoadError(f"router method {options.method!r}: expected one of {', '.join(METHODS)}")
        if not (model_dir / "model.bin").is_file():
            raise ModelLoadError(f"{model_dir}: no model.bin (not a CTranslate2 model directory)")
        try:
            self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
            self.chat = rp.ChatTemplate.from_tokenizer_config(config)
        except Exception as exc:  # tokenizers raises a bare Exception on unreadable files
            raise ModelLoadError(f"{model_dir}: tokenizer files unusable: {exc}") from exc
        self.options = options
        self.device, self.compute_type = resolve_device(options.device, options.compute_type)
        replicas = max(1, options.replicas)
        threads = options.threads
        if threads <= 0 and self.device == "cpu":
            # CTranslate2's default (4 threads per replica) oversubscribes small machines.
            threads = max(1, min(_usable_cpus(), 8) // replicas)
        try:
            self.generator = ctranslate2.Generator(
                str(model_dir), device=self.device, compute_type=self.compute_type,
                inter_threads=replicas, intra_threads=threads,
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"{model_dir}: CTranslate2 cannot load the model: {exc}") from exc
        self.model_dir = model_dir
        self.filled_prompt = filled_prompt
        self._route_names = tuple(route_names)
        self._answer_names = tuple(dict.fromkeys([*self._route_names, rp.OTHER]))
        self._trie = _build_trie(self.tokenizer, self._answer_names)
        self._fast_max = min(options.max_answer_tokens, _depth(self._trie) + OFF_LIST_TOKENS)
        self._split = self._static_split()
        self._static_tokens = (
            self.tokenizer.encode(self._split.static, add_special_tokens=False).tokens if self._split else None
        )
        self._calls = 0

    # -- prompt ---------------------------------------------------------------------------------

    def _static_split(self) -> rp.SplitPrompt | None:
        """Static head + tail, if rendering around the slot equals rendering the real message."""
        try:
            split = rp.split_prompt(self.chat, self.filled_prompt)
        except rp.ChatTemplateError:
            return None
        sample = rp.compact_json([{"role": "user", "content": "hi"}])
        whole = self.chat.render([{"role": "user", "content": self.filled_prompt.replace(rp.CONVERSATION_SLOT, sample)}])
        return split if split.text(sample) == whole + rp.ANSWER_PREFIX else None

    def model_input(self, conversation: Conversation) -> str:
        """The exact text given to the model (chat template applied), forced prefix included."""
        conv_json = rp.compact_json([dict(t) for t in conversation])
        if self._split is not None:
            return self._split.text(conv_json)
        user = self.filled_prompt.replace(rp.CONVERSATION_SLOT, conv_json)
        return self.chat.render([{"role": "user", "content": user}]) + rp.ANSWER_PREFIX

    def _tokens(self, conversation: Conversation, *, forced: bool) -> tuple[list[str], list[str] | None]:
        text = self.model_input(conversation)
        if not forced:
            text = text[: -len(rp.ANSWER_PREFIX)]
        tokens = self.tokenizer.encode(text, add_special_tokens=False).tokens
        static = self._static_tokens
        # The cached prefix is only valid when BPE does not merge across the split point.
        if static and forced and tokens[: len(static)] == static:
            return tokens[len(static):], static
        return tokens, None

    # -- decoding -------------------------------------------------------------------------------

    @property
    def route_names(self) -> tuple[str, ...]:
        return self._route_names

    def decide_batch(self, conversations: Sequence[Conversation], deadlines: Sequence[float]) -> list[RawDecision]:
        if self.options.method == METHOD_NAIVE:
            return self._naive(conversations, deadlines)
        groups: dict[bool, list[int]] = {}
        prompts = [self._tokens(c, forced=True) for c in conversations]
        for i, (_, static) in enumerate(prompts):
            groups.setdefault(static is not None, []).append(i)
        out: list[RawDecision | None] = [None] * len(conversations)
        for cached, idx in groups.items():
            static = self._static_tokens if cached else None
            for i, decision in zip(idx, self._fast([prompts[i][0] for i in idx], static, [deadlines[i] for i in idx])):
                out[i] = decision
        return [d for d in out if d is not None]

    def _fast(self, prompts: list[list[str]], static: list[str] | None, deadlines: list[float]) -> list[RawDecision]:
        walks = [_Walk(deadline=d, node=self._trie) for d in deadlines]
        constrain = self.options.constrain

        # The callback must not reference `self`: CTranslate2 may drop it on a worker thread, and
        # if that drops the last reference to the Generator, its destructor joins its own thread
        # (std::system_error "Resource deadlock avoided" -> abort).
        def step(result: Any) -> bool:
            w = walks[result.batch_id]
            w.ids.append(result.token_id)
            if not w.off_list:
                w.path.append(w.node)
                child = w.node.children.get(result.token_id)
                if child is None:
                    # Not a listed name. Constrained: stop here and pick among the names. Otherwise
                    # let the model finish its answer (bounded) and parse it, as archgw would.
                    w.off_list = True
                    if constrain:
                        return True
                else:
                    w.node = child
                    if len(child.names) == 1:
                        w.unique = child.names[0]
                        return True
            if time.monotonic() > w.deadline:
                w.timed_out = True
                return True
            return False

        results = self._generate(prompts, static, step, max_length=self._fast_max)
        for w, r in zip(walks, results):
            # Step logits come from the result, not the callback: in a batch the callback sees the
            # whole batch's rows, and shorter prompts are finished in the decoding loop (their
            # forced steps are recorded too), so take the last len(ids) steps.
            steps = r.logits[0] if r.logits else []
            generated = steps[len(steps) - len(w.ids):] if len(steps) >= len(w.ids) else []
            w.logits = [_host_logits(sv) for sv in generated[: len(w.path)]]
            if len(w.logits) < len(w.path):
                w.path = w.path[: len(w.logits)]
        prefix_cached = static is not None and self._calls > 0
        self._calls += 1
        prompt_len = len(static or ())
        decisions = []
        for w, p in zip(walks, prompts):
            if self.options.constrain and w.unique is None and not w.timed_out and w.logits:
                self._constrain(w, p, static)
            decisions.append(self._finish(w, prompt_len + len(p), prefix_cached))
        return decisions

    def _constrain(self, w: _Walk, prompt: list[str], static: list[str] | None) -> None:
        """Restricted argmax from the step where the model left the list; re-feed until unique."""
        node, logits = w.path[-1], w.logits[-1]
        chosen: list[int] = w.ids[: len(w.path) - 1]
        while True:
            allowed = list(node.children)
            pick = allowed[int(np.argmax(logits[allowed]))]
            chosen.append(pick)
            node = node.children[pick]
            if len(node.names) == 1 or time.monotonic() > w.deadline:
                break
            extra = [self.tokenizer.id_to_token(i) for i in chosen]
            result = self.generator.generate_batch(
                [prompt + extra], static_prompt=static, max_length=1, include_prompt_in_result=False,
                return_logits_vocab=True, beam_size=1,
            )[0]
            logits = _host_logits(result.logits[0][0])
        w.ids, w.node, w.off_list = chosen, node, False
        w.unique = node.names[0] if len(node.names) == 1 else None
        w.timed_out = w.unique is None

    def _generate(self, prompts: list[list[str]], static: list[str] | None, callback: Any, *, max_length: int,
                  logits: bool = True) -> list[Any]:
        return self.generator.generate_batch(
            prompts, static_prompt=static, cache_static_prompt=True, include_prompt_in_result=False,
            max_length=max_length, beam_size=1, return_logits_vocab=logits, callback=callback,
        )

    def _finish(self, w: _Walk, prompt_tokens: int, prefix_cached: bool) -> RawDecision:
        probs, confidence = self._probabilities(w)
        common = dict(probabilities=probs, prompt_tokens=prompt_tokens, generated_tokens=len(w.ids), prefix_cached=prefix_cached,
                      answer=self.tokenizer.decode(w.ids, skip_special_tokens=False))
        if w.timed_out:
            return RawDecision(None, "timeout", confidence, **common)
        if w.unique is not None:
            if w.unique == rp.OTHER:
                return RawDecision(None, rp.OTHER, confidence, **common)
            return RawDecision(w.unique, None, confidence, **common)
        parsed = rp.parse_answer(rp.ANSWER_PREFIX + self.tokenizer.decode(w.ids, skip_special_tokens=True), self._route_names)
        return RawDecision(parsed.route, parsed.fallback, confidence if parsed.route else None, **common)

    def _probabilities(self, w: _Walk) -> tuple[dict[str, float], float | None]:
        """Name probabilities along the decoded path; confidence = first-token mass of the pick."""
        if not w.logits:
            return {}, None
        probs: dict[str, float] = {}
        carried = 1.0
        confidence = None
        for depth, (node, logits) in enumerate(zip(w.path, w.logits)):
            allowed = list(node.children)
            mass = _softmax(logits)[allowed]
            mass = mass / mass.sum() if mass.sum() > 0 else np.full(len(allowed), 1.0 / len(allowed))
            taken = w.ids[depth] if depth < len(w.ids) else None
            for tok, m in zip(allowed, mass):
                child = node.children[tok]
                if tok == taken and depth + 1 < len(w.path):
                    continue  # the walk goes on below: its names get their mass deeper down
                for name in child.names:
                    probs[name] = carried * float(m) / len(child.names)
            if taken in node.children:
                carried *= float(mass[allowed.index(taken)])
                if depth == 0:
                    confidence = float(mass[allowed.index(taken)])
            else:
                break
        return dict(sorted(probs.items(), key=lambda kv: -kv[1])), confidence

    def _naive(self, conversations: Sequence[Conversation], deadlines: Sequence[float]) -> list[RawDecision]:
        """archgw's way: no cached prefix, generate the whole answer, parse it."""
        prompts = [self._tokens(c, forced=False)[0] for c in conversations]
        timed = [False] * len(prompts)

        def step(result: Any) -> bool:
            if time.monotonic() > deadlines[result.batch_id]:
                timed[result.batch_id] = True
                return True
            return False

        results = self._generate(prompts, None, step, max_length=self.options.max_answer_tokens, logits=False)
        out = []
        for r, p, late in zip(results, prompts, timed):
            ids = r.sequences_ids[0]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            parsed = rp.parse_answer(text, self._route_names)
            fallback = "timeout" if late else parsed.fallback
            out.append(RawDecision(None if late else parsed.route, fallback, None, {}, len(p), len(ids), False, text))
        return out

    def close(self) -> None:
        self.generator.unload_model()
