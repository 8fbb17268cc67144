"""Torch-free checkpoint conversion: a Hugging Face Qwen2 folder (safetensors) -> CTranslate2 model dir.

Stage: model management (offline tool, used by `archc model pull|convert` and the test fixtures).
Imports numpy, safetensors' file layout, tokenizers and ctranslate2's specs; never torch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import ctranslate2
import numpy as np
from ctranslate2.specs import common_spec, transformer_spec
from tokenizers import Tokenizer

# Files copied next to model.bin: the runtime tokenizes and renders the chat template from them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
MANIFEST = "archc-model.json"
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int16", "float16", "bfloat16", "float32")

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class ConvertError(ValueError):
    """The checkpoint cannot be converted (message names the file or tensor)."""


# -- safetensors, read without torch ------------------------------------------------------------

def _safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    # Format: u64 little-endian header length, JSON header, then the raw tensor bytes.
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if size <= 0 or size > 100_000_000:
            raise ConvertError(f"{path}: not a safetensors file")
        try:
            header = json.loads(f.read(size))
        except ValueError as exc:
            raise ConvertError(f"{path}: unreadable safetensors header") from exc
    header.pop("__metadata__", None)
    return 8 + size, header


class SafetensorsReader:
    """Tensors by name across a checkpoint's shards, as float32 numpy arrays.

    safetensors' own numpy API has no bfloat16 (numpy lacks the type), and Qwen checkpoints
    are bf16, so the reader memory-maps the file and widens bf16 -> f32 exactly (a 16-bit shift).
    """

    def __init__(self, files: list[Path]) -> None:
        self._where: dict[str, tuple[Path, int, dict[str, Any]]] = {}
        for path in files:
            base, header = _safetensors_header(path)
            for name, info in header.items():
                self._where[name] = (path, base, info)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise ConvertError(f"checkpoint has no tensor {name!r}")
        path, base, info = self._where[name]
        start, end = info["data_offsets"]
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=base + start, shape=(end - start,))
        dtype, shape = info["dtype"], tuple(info["shape"])
        if dtype == "BF16":
            widened = raw.view(np.uint16).astype(np.uint32) << 16
            return widened.view(np.float32).reshape(shape)
        if dtype not in _NP_DTYPES:
            raise ConvertError(f"tensor {name!r}: dtype {dtype} is not supported")
        return np.array(raw.view(_NP_DTYPES[dtype]).reshape(shape), dtype=np.float32)


def checkpoint_files(hf_dir: Path) -> list[Path]:
    """The safetensors shards of a checkpoint folder (index file honoured)."""
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [hf_dir / n for n in names]
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise ConvertError(f"{hf_dir}: no *.safetensors files (torch .bin checkpoints are not supported)")
    return files


# -- the Qwen2 mapping --------------------------------------------------------------------------

def qwen2_spec(config: Mapping[str, Any], tensor: Callable[[str], np.ndarray], has: Callable[[str], bool]) -> Any:
    """Fill a TransformerDecoderModelSpec for Qwen2ForCausalLM from named numpy tensors."""
    heads = int(config["num_attention_heads"])
    heads_kv = int(config.get("num_key_value_heads", heads))
    rope = config.get("rope_scaling") or {}
    if rope and rope.get("type", rope.get("rope_type")) not in (None, "default"):
        raise ConvertError(f"rope_scaling {rope!r} is not supported by this converter")
    spec = transformer_spec.TransformerDecoderModelSpec.from_config(
        int(config["num_hidden_layers"]),
        heads,
        activation=common_spec.Activation.SWISH,
        pre_norm=True,
        ffn_glu=True,
        rms_norm=True,
        rotary_dim=0,
        rotary_interleave=False,
        rotary_base=float(config.get("rope_theta", 10_000)),
        num_heads_kv=None if heads_kv == heads else heads_kv,
    )
    decoder = spec.decoder
    decoder.scale_embeddings = False
    decoder.embeddings.weight = tensor("model.embed_tokens.weight")
    decoder.layer_norm.gamma = tensor("model.norm.weight")
    for i, layer in enumerate(decoder.layer):
        p = f"model.layers.{i}."
        layer.self_attention.layer_norm.gamma = tensor(p + "input_layernorm.weight")
        layer.ffn.layer_norm.gamma = tensor(p + "post_attention_layernorm.weight")
        qkv = [p + f"self_attn.{x}_proj" for x in "qkv"]
        fused = layer.self_attention.linear[0]
        fused.weight = np.concatenate([tensor(n + ".weight") for n in qkv])
        if all(has(n + ".bias") for n in qkv):
            fused.bias = np.concatenate([tensor(n + ".bias") for n in qkv])
        layer.self_attention.linear[1].weight = tensor(p + "self_attn.o_proj.weight")
        layer.ffn.linear_0.weight = tensor(p + "mlp.gate_proj.weight")
        layer.ffn.linear_0_noact.weight = tensor(p + "mlp.up_proj.weight")
        layer.ffn.linear_1.weight = tensor(p + "mlp.down_proj.weight")
    # Tied embeddings (Qwen2.5-1.5B): the checkpoint has no lm_head, the projection is the embedding.
    head = "lm_head.weight" if has("lm_head.weight") else "model.embed_tokens.weight"
    decoder.projection.weight = tensor(head)
    spec.config.layer_norm_epsilon = float(config.get("rms_norm_eps", 1e-6))
    return spec


def vocabulary(tokenizer: Tokenizer, size: int) -> list[str]:
    """Token strings by id (added tokens included), padded to the model's vocab size."""
    by_id = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in by_id]
    if [i for _, i in by_id] != list(range(len(tokens))):
        raise ConvertError("tokenizer ids are not contiguous")
    return tokens + [f"<extra_id_{i}>" for i in range(size - len(tokens))]


def _token(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConvertError(f"{path} is missing") from exc
    except ValueError as exc:
        raise ConvertError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: expected a JSON object")
    return data


def convert_checkpoint(
    hf_dir: Path,
    out_dir: Path,
    *,
    quantization: str = "int8",
    source: Mapping[str, Any] | None = None,
    steps: Callable[[str], None] | None = None,
) -> Path:
    """Convert a Qwen2 checkpoint folder into a CTranslate2 model folder (tokenizer files copied in).

    The output is written to a sibling temp folder and renamed into place, so a crash never
    leaves a half-written model that looks installed.
    """
    note = steps or (lambda _msg: None)
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if quantization not in QUANTIZATIONS:
        raise ConvertError(f"quantization {quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")
    config = _read_json(hf_dir / "config.json")
    archs = config.get("architectures") or []
    if config.get("model_type", "qwen2") != "qwen2" or (archs and "Qwen2ForCausalLM" not in archs):
        raise ConvertError(f"{hf_dir}: model_type {config.get('model_type')!r} is not qwen2 (only Qwen2 is supported)")
    tok_config = _read_json(hf_dir / "tokenizer_config.json")
    try:
        tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
        raise ConvertError(f"{hf_dir / 'tokenizer.json'}: {exc}") from exc

    note("reading safetensors")
    reader = SafetensorsReader(checkpoint_files(hf_dir))
    spec = qwen2_spec(config, reader.get, reader.__contains__)
    return save_model_dir(spec, hf_dir, tokenizer, tok_config, int(config["vocab_size"]), out_dir,
                          quantization=quantization, source=source, steps=note)


def save_model_dir(
    spec: Any,
    tokenizer_dir: Path,
    tokenizer: Tokenizer,
    tok_config: Mapping[str, Any],
    vocab_size: int,
    out_dir: Path,
    *,
    quantization: str = "int8",
    source: Mapping[str, Any] | None = None,
    steps: Callable[[str], None] | None = None,
) -> Path:
    """Register vocabulary and special tokens, quantize, and write the model dir atomically
    (a sibling ``.partial`` folder renamed into place), tokenizer files and manifest included."""
    note = steps or (lambda _msg: None)
    out_dir = Path(out_dir)
    spec.register_vocabulary(vocabulary(tokenizer, vocab_size))
    spec.config.bos_token = _token(tok_config, "bos_token") or _token(tok_config, "pad_token") or "<|endoftext|>"
    spec.config.eos_token = _token(tok_config, "eos_token") or "<|endoftext|>"
    spec.config.unk_token = _token(tok_config, "unk_token") or ""
    try:
        spec.validate()
    except ValueError as exc:
        raise ConvertError(f"{tokenizer_dir}: {exc}") from exc
    note(f"quantizing to {quantization}")
    spec.optimize(quantization=quantization)

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    note(f"writing {out_dir}")
    spec.save(str(tmp))
    for name in TOKENIZER_FILES:
        shutil.copyfile(Path(tokenizer_dir) / name, tmp / name)
    manifest = {"format": "ctranslate2", "architecture": "Qwen2ForCausalLM", "quantization": quantization,
                "ctranslate2": ctranslate2.__version__, **(dict(source) if source else {})}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def iter_tensor_names(hf_dir: Path) -> Iterator[str]:
    """Names of every tensor in a checkpoint folder (for diagnostics and tests)."""
    for path in checkpoint_files(Path(hf_dir)):
        yield from _safetensors_header(path)[1]
