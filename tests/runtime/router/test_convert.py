"""runtime/router/convert.py: the torch-free Qwen2 converter matches the architecture's math.

Without torch, the reference is a numpy forward pass of Qwen2 written from its definition (RMSNorm,
q/k/v biases, rotate-half RoPE, grouped-query attention, SwiGLU, tied or untied head); with torch
and transformers installed, an extra test compares against the official ct2-transformers-converter.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from runtime.router.convert import ConvertError, SafetensorsReader, convert_checkpoint, vocabulary
from tests.support import tiny_models

SHAPE = tiny_models.Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=96)


def _rms(x: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def _rope(x: np.ndarray, theta: float) -> np.ndarray:
    t, _, d = x.shape
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.outer(np.arange(t), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None, :], np.sin(np.concatenate([ang, ang], -1))[:, None, :]
    half = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + half * sin


def reference_logits(w: dict[str, np.ndarray], config: dict, ids: list[int]) -> np.ndarray:
    """Next-token logits after ``ids``: Qwen2ForCausalLM, in float64 numpy."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    h_, nh, nkv, eps = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"], config["rms_norm_eps"]
    d = h_ // nh
    x = w["model.embed_tokens.weight"][ids]
    t = len(ids)
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = _rms(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]).reshape(t, nh, d)
        k = (h @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]).reshape(t, nkv, d)
        v = (h @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]).reshape(t, nkv, d)
        q, k = _rope(q, config["rope_theta"]), _rope(k, config["rope_theta"])
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + mask
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", probs, v).reshape(t, h_)
        x = x + attn @ w[p + "self_attn.o_proj.weight"].T
        h = _rms(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = _rms(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x[-1] @ head.T


def ct2_logits(model_dir: Path, tokens: list[str]) -> np.ndarray:
    generator = ctranslate2.Generator(str(model_dir), device="cpu", compute_type="float32")
    try:
        result = generator.generate_batch([tokens], max_length=1, include_prompt_in_result=False,
                                          return_logits_vocab=True)[0]
        return np.asarray(result.logits[0][0]).reshape(-1)
    finally:
        generator.unload_model()


@pytest.mark.parametrize("untied", [False, True], ids=["tied", "untied"])
def test_converted_model_matches_a_numpy_qwen2(tmp_path: Path, tiny_tokenizer: Tokenizer, untied: bool) -> None:
    hf = tiny_models.build_hf_checkpoint(tmp_path / "hf", SHAPE, tokenizer=tiny_tokenizer, scale=0.3, untied=untied, seed=7)
    out = convert_checkpoint(hf, tmp_path / "ct2", quantization="float32")
    config = json.loads((hf / "config.json").read_text())
    enc = tiny_tokenizer.encode("<|im_start|>user\nplease review this function for bugs<|im_end|>\n", add_special_tokens=False)
    expected = reference_logits(load_file(str(hf / "model.safetensors")), config, enc.ids)
    got = ct2_logits(out, enc.tokens)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3 * float(np.abs(expected).max()))
    assert int(got.argmax()) == int(expected.argmax())


def test_bfloat16_checkpoints_are_widened_exactly(tmp_path: Path) -> None:
    values = np.array([[1.0, -2.5, 3.140625, 1e-3]], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncation: exact for these values except 1e-3
    path = tmp_path / "w.safetensors"
    save_file({"t": bf16}, str(path))
    raw = path.read_bytes()
    # Re-label the tensor as BF16 in the header (safetensors' numpy API cannot write bfloat16).
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["t"]["dtype"] = "BF16"
    new = json.dumps(header, separators=(",", ":")).encode()
    new = new.ljust(-(-len(new) // 8) * 8)  # safetensors pads the header to 8 bytes
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    got = SafetensorsReader([path]).get("t")
    assert got.dtype == np.float32 and got.shape == (1, 4)
    assert got[0, :3].tolist() == [1.0, -2.5, 3.140625]
    assert got[0, 3] == pytest.approx(1e-3, rel=1e-2)


def test_vocabulary_is_padded_to_the_model_size(tiny_tokenizer: Tokenizer) -> None:
    tokens = vocabulary(tiny_tokenizer, tiny_tokenizer.get_vocab_size() + 3)
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tokens[-3:] == ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]


def test_missing_tensor_and_bad_files_are_convert_errors(tmp_path: Path, tiny_hf_checkpoint: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_hf_checkpoint.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(ConvertError, match="model.layers.1.mlp.up_proj.weight"):
        convert_checkpoint(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (broken / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ConvertError, match="safetensors"):
        convert_checkpoint(broken, tmp_path / "out")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConvertError, match="config.json"):
        convert_checkpoint(broken, tmp_path / "out")
    with pytest.raises(ConvertError, match="quantization"):
        convert_checkpoint(tiny_hf_checkpoint, tmp_path / "out", quantization="int3")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="optional: the official ct2-transformers-converter needs torch (not a runtime dependency)")
@pytest.mark.parametrize("untied", [False, True], ids=["tied", "untied"])
def test_matches_the_official_converter(tmp_path: Path, tiny_tokenizer: Tokenizer, untied: bool) -> None:
    hf = tiny_models.build_hf_checkpoint(tmp_path / "hf", SHAPE, tokenizer=tiny_tokenizer, scale=0.3, seed=3,
                                         untied=untied)
    ours = convert_checkpoint(hf, tmp_path / "ours", quantization="float32")
    official = tmp_path / "official"
    subprocess.run([sys.executable, "-m", "ctranslate2.converters.transformers", "--model", str(hf), "--output_dir",
                    str(official), "--quantization", "float32"], check=True, capture_output=True, timeout=300)
    tokens = tiny_tokenizer.encode("summarize this article for me", add_special_tokens=False).tokens
    np.testing.assert_allclose(ct2_logits(ours, tokens), ct2_logits(official, tokens), rtol=1e-5, atol=1e-5)
    assert json.loads((ours / "config.json").read_text()) == json.loads((official / "config.json").read_text())
