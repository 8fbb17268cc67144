"""Tiny Qwen2 router models for tests and benchmarks: numpy weights, a byte-level BPE tokenizer
trained with `tokenizers`, written as a Hugging Face folder and converted by archc's own torch-free
converter (runtime/router/convert.py), so fixtures exercise the real conversion and decoding path.

- `build_hf_checkpoint(dir, shape)`: random weights (the shape is what costs time, not the values).
- `build_scripted_checkpoint(dir, answer)`: every layer outputs zero, so the logits depend only on
  the current token; the projection chains the answer's tokens, so greedy decoding answers `answer`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from runtime.router import prompt as router_prompt
from runtime.router.convert import convert_checkpoint

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2.5), followed by byte-level mapping.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5-Instruct's chat template (tokenizer_config.json), tools branch included.
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

# Route names the tiny tokenizer learns as whole words (tests may use others: bytes still work).
TEST_ROUTES = (
    ("code_generation", "generating new code snippets, functions, or boilerplate based on user prompts"),
    ("code_review", "reviewing, analyzing, and suggesting improvements to existing code"),
    ("summarization", "summarizing long documents, articles and conversations"),
    ("image_generation", "generating images from a text description"),
)
_CORPUS_EXTRA = (
    "hi", "Hello! How can I assist you today?", "please review this function for bugs",
    "write a python function that sorts a list", "summarize this article for me",
    "given the image In style of Andy Warhol, portrait of Bart and Lisa Simpson",
    '{"route": "other"}', '{"route": "route_name"}', "what is the weather like today",
)


@dataclass(frozen=True)
class Shape:
    """A Qwen2 model shape (the cost of a decision depends on it, not on the weights)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vocab: int | None = None  # None: the tokenizer's size
    rope_theta: float = 1_000_000.0


TINY = Shape()
QWEN25_1_5B = Shape(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960, vocab=151936)


def train_tokenizer(extra: Iterable[str] = (), vocab_size: int = 1200) -> Tokenizer:
    """A byte-level BPE tokenizer with Qwen2's split and special tokens, trained in milliseconds."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    corpus = [router_prompt.ARCH_ROUTER_TEMPLATE, router_prompt.fill_routes(TEST_ROUTES)]
    corpus += [f'{{"route": "{n}"}}' for n, _ in TEST_ROUTES] + [d for _, d in TEST_ROUTES]
    corpus += list(_CORPUS_EXTRA) + list(extra)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    return tok


def tokenizer_config(chat_template: str = QWEN25_CHAT_TEMPLATE) -> dict:
    return {
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "chat_template": chat_template, "model_max_length": 32768,
        "added_tokens_decoder": {str(i): {"content": t, "special": True} for i, t in enumerate(SPECIAL_TOKENS)},
    }


def _write_tokenizer(folder: Path, tok: Tokenizer, chat_template: str) -> None:
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(chat_template), indent=2), encoding="utf-8")


def _config(shape: Shape, vocab: int) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
        "intermediate_size": shape.intermediate, "vocab_size": vocab, "rms_norm_eps": 1e-6,
        "rope_theta": shape.rope_theta, "tie_word_embeddings": True, "hidden_act": "silu",
        "max_position_embeddings": 32768, "torch_dtype": "float32", "bos_token_id": 0, "eos_token_id": 2,
    }


def _weights(shape: Shape, vocab: int, rng: np.random.Generator, zero_layers: bool,
             scale: float = 0.02) -> dict[str, np.ndarray]:
    h, kv = shape.hidden, shape.hidden // shape.heads * shape.kv_heads

    def rand(*dims: int) -> np.ndarray:
        if zero_layers:
            return np.zeros(dims, dtype=np.float32)
        return (rng.standard_normal(dims, dtype=np.float32) * scale).astype(np.float32)

    w = {"model.embed_tokens.weight": rand(vocab, h) if not zero_layers else np.zeros((vocab, h), np.float32),
         "model.norm.weight": np.ones(h, np.float32)}
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = np.ones(h, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(h, np.float32)
        for name, rows in (("q", h), ("k", kv), ("v", kv)):
            w[p + f"self_attn.{name}_proj.weight"] = rand(rows, h)
            w[p + f"self_attn.{name}_proj.bias"] = rand(rows)
        w[p + "self_attn.o_proj.weight"] = rand(h, h)
        w[p + "mlp.gate_proj.weight"] = rand(shape.intermediate, h)
        w[p + "mlp.up_proj.weight"] = rand(shape.intermediate, h)
        w[p + "mlp.down_proj.weight"] = rand(h, shape.intermediate)
    return w


def build_hf_checkpoint(folder: Path, shape: Shape = TINY, *, tokenizer: Tokenizer | None = None,
                        chat_template: str = QWEN25_CHAT_TEMPLATE, seed: int = 0, scale: float = 0.02,
                        untied: bool = False) -> Path:
    """A Hugging Face style Qwen2 folder with random weights (config, safetensors, tokenizer files)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer or train_tokenizer()
    vocab = shape.vocab or tok.get_vocab_size(with_added_tokens=True)
    rng = np.random.default_rng(seed)
    weights = _weights(shape, vocab, rng, zero_layers=False, scale=scale)
    if untied:
        weights["lm_head.weight"] = (rng.standard_normal((vocab, shape.hidden), dtype=np.float32) * scale)
    save_file(weights, str(folder / "model.safetensors"))
    config = _config(shape, vocab) | ({"tie_word_embeddings": False} if untied else {})
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _write_tokenizer(folder, tok, chat_template)
    return folder


def answer_chain(tok: Tokenizer, answer: str, chat_template: str = QWEN25_CHAT_TEMPLATE) -> list[int]:
    """Token ids the scripted model walks: last token of the generation prompt, the answer, eos."""
    head = router_prompt.ChatTemplate.from_tokenizer_config(tokenizer_config(chat_template)).render(
        [{"role": "user", "content": "x"}])
    head_ids = tok.encode(head, add_special_tokens=False).ids
    full = tok.encode(head + answer, add_special_tokens=False).ids
    if full[: len(head_ids)] != head_ids:
        raise ValueError(f"answer {answer!r} does not tokenize cleanly after the generation prompt")
    return [head_ids[-1], *full[len(head_ids):], tok.token_to_id("<|im_end|>")]


def build_scripted_checkpoint(folder: Path, answer: str, *, logit: float = 30.0, hidden: int = 64,
                              tokenizer: Tokenizer | None = None, chat_template: str = QWEN25_CHAT_TEMPLATE) -> Path:
    """A Qwen2 folder whose greedy answer is ``answer`` (then eos), whatever the prompt.

    Layers output zero, so the final state is the current token's embedding. Chain tokens get
    basis embeddings e_j and the projection maps e_j to the next chain token with ``logit``
    (a smaller ``logit`` spreads probability, for confidence tests); all other tokens share a
    direction that maps to eos.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer or train_tokenizer()
    vocab = tok.get_vocab_size(with_added_tokens=True)
    chain = answer_chain(tok, answer, chat_template)
    states = list(dict.fromkeys(chain[:-1]))
    if len(states) + 1 > hidden:
        raise ValueError("answer too long for the scripted model's hidden size")
    successor: dict[int, int] = {}
    for cur, nxt in zip(chain, chain[1:]):
        if successor.setdefault(cur, nxt) != nxt:
            raise ValueError(f"answer {answer!r} repeats token {tok.id_to_token(cur)!r} with different successors")
    shape = Shape(hidden=hidden, layers=1, heads=4, kv_heads=2, intermediate=hidden * 2)
    w = _weights(shape, vocab, np.random.default_rng(0), zero_layers=True)
    rest = hidden - 1  # the direction shared by every token outside the chain
    emb = np.zeros((vocab, hidden), np.float32)
    emb[:, rest] = 1.0
    head = np.zeros((vocab, hidden), np.float32)
    scale = logit / np.sqrt(hidden)  # RMSNorm turns a basis vector into sqrt(hidden) * e_j
    eos = tok.token_to_id("<|im_end|>")
    for j, state in enumerate(states):
        emb[state] = 0.0
        emb[state, j] = 1.0
        head[successor[state], j] = scale
    head[eos, rest] = scale
    w["model.embed_tokens.weight"] = emb
    w["lm_head.weight"] = head
    save_file(w, str(folder / "model.safetensors"))
    config = _config(shape, vocab) | {"tie_word_embeddings": False}
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _write_tokenizer(folder, tok, chat_template)
    return folder


def convert(hf_dir: Path, out_dir: Path, quantization: str = "int8") -> Path:
    """Convert with archc's torch-free converter (the path `archc model convert` takes)."""
    return convert_checkpoint(hf_dir, out_dir, quantization=quantization)


def fill_routes_for_bundle(routes: Sequence[tuple[str, str]] = TEST_ROUTES, *,
                           router_model: str = "katanemo/Arch-Router-1.5B") -> dict:
    """A bundle ``router`` section for ``routes``, filled the way the compiler fills it."""
    return {"model": router_model, "prompt": router_prompt.fill_routes(routes), "route_names": [n for n, _ in routes],
            "template_sha256": hashlib.sha256(router_prompt.ARCH_ROUTER_TEMPLATE.encode()).hexdigest()}


def bundle_dict(routes: Sequence[tuple[str, str]] = TEST_ROUTES, *, router_model: str = "katanemo/Arch-Router-1.5B",
                model_dir_hint: str | None = None, **routing: object) -> dict:
    """A minimal bundle dict (for `archc.bundle.seal`) whose router section matches ``routes``.

    ``routing`` keywords become the bundle's ``routing`` section; ``model_dir_hint`` is the older
    name of ``router_model`` (the bundle's ``router.model``)."""
    router_model = model_dir_hint or router_model
    providers = [{"name": f"openai/{n}-model", "provider": "openai", "model": f"{n}-model", "wire": "openai_chat",
                  "endpoint": "http://127.0.0.1:9/v1/chat/completions", "auth": "none"} for n, _ in routes]
    providers.append({"name": "openai/default-model", "provider": "openai", "model": "default-model",
                      "wire": "openai_chat", "endpoint": "http://127.0.0.1:9/v1/chat/completions", "auth": "none",
                      "default": True})
    return {
        "providers": providers,
        "routes": [{"name": n, "description": d, "model": f"openai/{n}-model"} for n, d in routes],
        "default_model": "openai/default-model",
        "routing": dict(routing),
        "router": fill_routes_for_bundle(routes, router_model=router_model),
    }
