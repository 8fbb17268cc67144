"""The gateway's own cost of a remote router decision (`bench/router.py --remote`).

`archc serve` pinned to CPU 0, its router on a server (``router.provider``): the bench's fake
upstream (bench/gateway.py, CPU 1) answers the router's chat request at once with
``{"route": "code"}``, so what is measured is the gateway: select the conversation, render the
prompt, one HTTP round trip on loopback, parse, decide. wrk (CPU 1) POSTs ``/v1/route`` (the
decision only, no model call), at c=1 and c=32, against the same gateway with the decision cache
off (``ARCHC_ROUTER_CACHE_SIZE=0``: every request asks the server) and a bundle with no routes (no
router at all): the difference is what a remote decision adds.

    .venv/bin/python bench/router.py --remote [--duration 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as bench  # noqa: E402  (the harness: fake upstream, processes, wrk)

import httpx  # noqa: E402

from archc.bundle import ARCH_ROUTER_TEMPLATE_SHA256, seal  # noqa: E402
from runtime.router import prompt as rp  # noqa: E402

BODY = {"model": "none", "messages": [{"role": "system", "content": "You are a coding agent."},
                                      {"role": "user", "content": "Why does this test fail on CI but not locally?"}]}


def _bundle(folder: Path, upstream: str, remote: bool) -> Path:
    routes = [("code", "writing, reviewing or debugging code"), ("chat", "small talk")]
    providers: list[dict[str, Any]] = [
        {"name": "openai/gpt-4o", "provider": "openai", "model": "gpt-4o", "wire": "openai_chat",
         "endpoint": upstream + "/v1/chat/completions", "auth": "none", "default": True}]
    router = None
    if remote:
        providers.append({"name": "arch-router", "provider": "arch", "model": "hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M",
                          "wire": "openai_chat", "endpoint": upstream + "/router/v1/chat/completions", "auth": "none"})
        router = {"model": "katanemo/Arch-Router-1.5B", "prompt": rp.fill_routes(routes), "route_names": [n for n, _ in routes],
                  "template_sha256": ARCH_ROUTER_TEMPLATE_SHA256, "provider": "arch-router"}
    data = {"source": {"path": "bench"}, "listeners": [], "providers": providers, "aliases": [],
            "routes": [{"name": n, "description": d, "model": "openai/gpt-4o"} for n, d in routes] if remote else [],
            "default_model": "openai/gpt-4o", "routing": {"timeout_ms": 5000}, "router": router}
    path = folder / ("remote.json" if remote else "plain.json")
    path.write_bytes(seal(data).to_bytes())
    return path


def run(duration: float, concurrency: list[int]) -> str:
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="archc-remote-router-") as tmp:
        folder = Path(tmp)
        procs = []
        try:
            port = bench.free_port()
            upstream = f"http://127.0.0.1:{port}"
            procs.append(bench.start([sys.executable, str(Path(bench.__file__)), "--serve-upstream", str(port)], cpu=1))
            bench.wait_http(upstream + "/", 20)
            for name, remote in (("no router", False), ("remote router", True)):
                gw_port = bench.free_port()
                gw = bench.start([sys.executable, "-m", "archc", "serve", str(_bundle(folder, upstream, remote)), "--port",
                                  str(gw_port), "--log-level", "warning"], cpu=0, env={"ARCHC_ROUTER_CACHE_SIZE": "0"},
                                 log=folder / f"{name}.log", cwd=bench.ROOT)
                procs.append(gw)
                bench.wait_http(f"http://127.0.0.1:{gw_port}/readyz", 60)
                url = f"http://127.0.0.1:{gw_port}/v1/route"
                decided = httpx.post(url, json=BODY, timeout=10).json()  # the answer must be right, not just fast
                expected = ("code", False, None) if remote else (None, False, None)
                if (decided["route"], decided["cache_hit"], decided["fallback"]) != expected:
                    raise SystemExit(f"{name}: /v1/route answered {decided}")
                for c in concurrency:
                    bench.wrk(url, BODY, c, 1, {}, folder)  # warm-up
                    rows.append((name, c, bench.wrk(url, BODY, c, duration, {}, folder)))
                bench.stop(gw)
        finally:
            for p in procs:
                bench.stop(p)
    base = {c: r for name, c, r in rows if name == "no router"}
    lines = ["| /v1/route | c | decisions/s | p50 ms | p99 ms | added p50 ms | errors |", "|---|---|---|---|---|---|---|"]
    for name, c, r in rows:
        added = f"{r['p50_ms'] - base[c]['p50_ms']:.3f}" if name != "no router" else "-"
        lines.append(f"| {name} | {c} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {added} | {r['errors']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 32])
    args = ap.parse_args(argv)
    print(run(args.duration, args.concurrency))


if __name__ == "__main__":
    main()
