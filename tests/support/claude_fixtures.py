"""Fixtures for the Claude Code tests: the claude binary, a scratch HOME, and a tiny router model
whose answer depends on the conversation (a real CTranslate2 model, built in well under a second).

The branching model extends tests/support/tiny_models.py's scripted model (a bigram chain: layers
output zero, so the next token depends only on the current one). One attention head adds the
input dependence: at the token where the two answers part, its query matches the key of a
*marker* token, so the head copies "marker present" into a signal dimension that the projection
turns into the second answer's next token. Everywhere else the head attends uniformly, so the
signal is diluted to nothing. Greedy decoding then answers ``if_absent`` unless the prompt holds
the marker word, in which case it answers ``if_present``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from tests.support import tiny_models
from tests.support.agents import agent_bin

REPO = Path(__file__).resolve().parents[2]

# The intents the end-to-end tests send, and the word that tells them apart.
MARKER_WORD = "bugs"
GENERATE_INTENT = "write a python function that sorts a list"
REVIEW_INTENT = "please review this function for bugs"
_MARKER_CORPUS = tuple(f"{s} {MARKER_WORD} {MARKER_WORD}s" for s in ("find the", "any", "fix these", "no")) * 4


def branching_tokenizer() -> Tokenizer:
    """tiny_models' tokenizer, trained so that the marker word is a single token."""
    return tiny_models.train_tokenizer(extra=_MARKER_CORPUS + (GENERATE_INTENT, REVIEW_INTENT))


def marker_ids(tok: Tokenizer, word: str = MARKER_WORD) -> list[int]:
    ids = []
    for variant in (" " + word, word):
        encoded = tok.encode(variant, add_special_tokens=False).ids
        if len(encoded) == 1:
            ids.append(encoded[0])
    if not ids:
        raise ValueError(f"marker {word!r} is not a single token in this tokenizer")
    return ids


@dataclass(frozen=True)
class _Plan:
    """Where the branching model's pieces live: chain states get basis dimensions 0..n-1."""

    hidden: int
    states: list[int]
    successor: dict[int, int]
    branch: int
    next_absent: int
    next_present: int
    markers: list[int]

    @property
    def signal(self) -> int:
        return self.hidden - 3

    @property
    def mark(self) -> int:
        return self.hidden - 2

    @property
    def rest(self) -> int:
        return self.hidden - 1


def _plan(tok: Tokenizer, if_absent: str, if_present: str, marker: str, hidden: int) -> _Plan:
    chain_a = tiny_models.answer_chain(tok, if_absent)
    chain_b = tiny_models.answer_chain(tok, if_present)
    split = next(i for i, (a, b) in enumerate(zip(chain_a, chain_b)) if a != b)
    branch = chain_a[split - 1]
    successor: dict[int, int] = {}
    for chain in (chain_a, chain_b):
        for cur, nxt in zip(chain, chain[1:]):
            if cur != branch and successor.setdefault(cur, nxt) != nxt:
                raise ValueError(f"token {tok.id_to_token(cur)!r} has two successors outside the branch point")
    plan = _Plan(hidden, list(dict.fromkeys([*chain_a[:-1], *chain_b[:-1]])), successor, branch,
                 chain_a[split], chain_b[split], marker_ids(tok, marker))
    if len(plan.states) > plan.signal or any(m in plan.states for m in plan.markers):
        raise ValueError("answers too long for the hidden size, or the marker is part of an answer")
    return plan


def _embeddings_and_head(plan: _Plan, vocab: int, eos: int, logit: float) -> tuple[np.ndarray, np.ndarray]:
    """The scripted bigram chain (tiny_models' idea), plus the marker direction and the branch."""
    emb = np.zeros((vocab, plan.hidden), np.float32)
    emb[:, plan.rest] = 1.0  # every token outside the chain shares one direction (it maps to eos)
    for j, state in enumerate(plan.states):
        emb[state] = 0.0
        emb[state, j] = 1.0
    for m in plan.markers:
        emb[m] = 0.0
        emb[m, plan.mark] = 1.0
    scale = logit / np.sqrt(plan.hidden)  # RMSNorm makes a basis vector sqrt(hidden) * e_j
    head = np.zeros((vocab, plan.hidden), np.float32)
    for j, state in enumerate(plan.states):
        if state != plan.branch:
            head[plan.successor[state], j] = scale
    head[plan.next_absent, plan.states.index(plan.branch)] = scale  # no signal: the first answer
    head[plan.next_present, plan.signal] = scale  # signal above 1 (relative to e_branch): the second
    head[eos, plan.rest] = scale
    return emb, head


def _layer(plan: _Plan, heads: int, kv_heads: int) -> dict[str, np.ndarray]:
    """One decoder layer whose head 0 copies "a marker is in the prompt" into the signal dimension.

    Head 0 (reads kv head 0): query only at the branch token, key only on marker tokens, both in
    dimension head_dim-1, whose rotary frequency is the lowest (rope_theta 1e6), so the score holds
    at any distance. Its value is "marker"; o_proj writes it to the signal dimension. Attention
    focused on markers gives a signal of 8; elsewhere the head attends uniformly and the signal is
    diluted well under 1. The MLP is zero.
    """
    hidden, head_dim = plan.hidden, plan.hidden // heads
    kv = head_dim * kv_heads
    q, k = np.zeros((hidden, hidden), np.float32), np.zeros((kv, hidden), np.float32)
    v, o = np.zeros((kv, hidden), np.float32), np.zeros((hidden, hidden), np.float32)
    q[head_dim - 1, plan.states.index(plan.branch)] = 1.5
    k[head_dim - 1, plan.mark] = 1.5
    v[0, plan.mark] = 1.0 / np.sqrt(hidden)  # RMSNorm scales the marker's e_mark to sqrt(hidden)
    o[plan.signal, 0] = 8.0
    p = "model.layers.0."
    return {
        p + "input_layernorm.weight": np.ones(hidden, np.float32),
        p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
        p + "self_attn.q_proj.weight": q, p + "self_attn.q_proj.bias": np.zeros(hidden, np.float32),
        p + "self_attn.k_proj.weight": k, p + "self_attn.k_proj.bias": np.zeros(kv, np.float32),
        p + "self_attn.v_proj.weight": v, p + "self_attn.v_proj.bias": np.zeros(kv, np.float32),
        p + "self_attn.o_proj.weight": o,
        p + "mlp.gate_proj.weight": np.zeros((hidden * 2, hidden), np.float32),
        p + "mlp.up_proj.weight": np.zeros((hidden * 2, hidden), np.float32),
        p + "mlp.down_proj.weight": np.zeros((hidden, hidden * 2), np.float32),
    }


def build_branching_checkpoint(
    folder: Path,
    if_absent: str,
    if_present: str,
    *,
    marker: str = MARKER_WORD,
    hidden: int = 64,
    logit: float = 30.0,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """A Qwen2 folder answering ``if_present`` when the prompt holds ``marker``, else ``if_absent``."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer or branching_tokenizer()
    vocab = tok.get_vocab_size(with_added_tokens=True)
    plan = _plan(tok, if_absent, if_present, marker, hidden)
    heads, kv_heads = 4, 2
    emb, head = _embeddings_and_head(plan, vocab, tok.token_to_id("<|im_end|>"), logit)
    weights = {"model.embed_tokens.weight": emb, "model.norm.weight": np.ones(hidden, np.float32),
               "lm_head.weight": head, **_layer(plan, heads, kv_heads)}
    save_file(weights, str(folder / "model.safetensors"))
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
        "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "intermediate_size": hidden * 2, "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0,
        "tie_word_embeddings": False, "hidden_act": "silu", "max_position_embeddings": 32768,
        "torch_dtype": "float32", "bos_token_id": 0, "eos_token_id": 2,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(tiny_models.tokenizer_config(), indent=2), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def branching_router_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Answers code_review when the conversation says "bugs", else code_generation (float32 CT2)."""
    base = tmp_path_factory.mktemp("branching-router")
    hf = build_branching_checkpoint(base / "hf", '{"route": "code_generation"}', '{"route": "code_review"}')
    return tiny_models.convert(hf, base / "ct2", quantization="float32")


@pytest.fixture(scope="session")
def claude_bin() -> str:
    """The real Claude Code CLI (`make test` installs it into .tools/); CI must have it."""
    return agent_bin("claude", "@anthropic-ai/claude-code")


@pytest.fixture
def claude_home(tmp_path: Path) -> Path:
    """A scratch HOME (and working directory) so Claude Code reads no user settings."""
    home = tmp_path / "home"
    home.mkdir()
    return home


def claude_env(home: Path, base_url: str, **extra: str) -> dict[str, str]:
    """The environment Claude Code runs offline with against ``base_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_AUTH_TOKEN="archc-test",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    env.update(extra)
    return env


def run_claude(claude: str, home: Path, base_url: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [claude, *args], env=claude_env(home, base_url), cwd=home, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def iter_lines(text: str) -> Iterator[str]:
    yield from (line for line in text.splitlines() if line.strip())
