"""Compile benchmark: build time for a generated config of 200 providers, 1,000 routes and 500 aliases
(target <= 1 s), and bundle load time via archc.bundle.load (target <= 50 ms). Best of N runs.

    .venv/bin/python bench/compile.py [--runs N] [--providers 200 --routes 1000 --aliases 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from archc import bundle as bundle_mod
from archc.compiler import compile_path

PREFIXES = ("openai", "anthropic", "gemini", "mistral", "deepseek", "groq", "xai", "together_ai", "openrouter")


def generate(providers: int, routes: int, aliases: int) -> str:
    """A valid config: routes spread over providers, aliases versioned, every 5th one a chain."""
    lines = ["version: v0.3.0", "listeners:", "  - {type: model, name: llm, port: 12000}", "model_providers:"]
    per = routes // providers
    extra = routes % providers
    route = 0
    for i in range(providers):
        prefix = PREFIXES[i % len(PREFIXES)]
        lines += [f"  - model: {prefix}/model-{i}", f"    access_key: ${prefix.upper()}_API_KEY"]
        if i == 0:
            lines.append("    default: true")
        count = per + (1 if i < extra else 0)
        if count:
            lines.append("    routing_preferences:")
        for _ in range(count):
            lines += [f"      - name: route-{route}",
                      f"        description: handle requests of kind {route}, such as writing or reviewing item {route}"]
            route += 1
    lines.append("model_aliases:")
    for j in range(aliases):
        target = f"alias.a{j - 1}.v1" if j % 5 == 4 else f"model-{j % providers}"
        lines += [f"  alias.a{j}.v1:", f"    target: {target}"]
    return "\n".join(lines) + "\n"


def best(fn, runs: int) -> tuple[float, float]:
    """(best wall time, best CPU time of this process): CPU time is less skewed by other load."""
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--providers", type=int, default=200)
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--aliases", type=int, default=500)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(generate(args.providers, args.routes, args.aliases))
        out = Path(tmp) / "bundle.json"

        def build() -> None:
            result = compile_path(config, lock_mode="ignore")
            if not result.ok:
                raise SystemExit(f"generated config does not compile: {result.errors[:3]}")
            out.write_bytes(result.bundle.to_bytes())

        build()
        b = bundle_mod.load(out)
        assert (len(b.providers), len(b.routes), len(b.aliases)) == (args.providers, args.routes, args.aliases)
        build_s = best(build, args.runs)
        load_s = best(lambda: bundle_mod.load(out), args.runs * 4)
        size = config.stat().st_size
        print(f"config: {args.providers} providers, {args.routes} routes, {args.aliases} aliases "
              f"({size / 1024:.0f} KiB YAML, {out.stat().st_size / 1024:.0f} KiB bundle)")
        print(f"build (load+validate+resolve+emit+write), best of {args.runs}: {build_s[0] * 1000:.0f} ms wall, "
              f"{build_s[1] * 1000:.0f} ms CPU (target <= 1000 ms)")
        print(f"bundle load (archc.bundle.load), best of {args.runs * 4}: {load_s[0] * 1000:.1f} ms wall, "
              f"{load_s[1] * 1000:.1f} ms CPU (target <= 50 ms)")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
