"""Soak: 20,000 requests at concurrency 256 through `archc serve`, loopback only, bounded in count and time.

Passes when no request fails and the gateway's resident memory grows less than 10% between request
5,000 and the last one. Prints the memory curve (RSS every ``--sample-every`` requests), req/s and
latency percentiles. The upstream is bench/gateway.py's instant fake upstream (an OpenAI-format
provider); the mix is OpenAI chat (plain and streamed) and Anthropic messages (translated), with the
hardening stack on: access log, a request limit that never binds, retries configured.

    python bench/soak.py [--requests 20000] [--concurrency 256] [--time-limit 600]

Churn (``--churn``): 60,000 connect-request-close cycles at concurrency 64, then 20,000 bare
connect-close, each on a new socket (tests/support/churn.py). Passes when no request fails, every
socket the client closed is released (CLOSE_WAIT back to 0 within 1 s of the end; the peak is
printed), and the gateway's open files and RSS are back near where they stood after a warm-up.

    python bench/soak.py --churn [--cycles 60000] [--bare 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archc.bundle import seal  # noqa: E402
from tests.support.churn import churn, open_fds, rss_mb, settle  # noqa: E402
BODIES = [
    ("/v1/chat/completions", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}),
    ("/v1/chat/completions", {"model": "openai/gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Say hello."}]}),
    ("/v1/messages", {"model": "openai/gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello."}]}),
    ("/v1/chat/completions", {"model": "arch.soak.v1", "messages": [{"role": "user", "content": "Say hello again."}]}),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up in {timeout}s")


def write_bundle(folder: Path, upstream: str) -> Path:
    bundle = seal({
        "source": {"path": "bench/soak.py"}, "listeners": [],
        "providers": [{"name": "openai/gpt-4o", "provider": "openai", "model": "gpt-4o", "wire": "openai_chat",
                       "endpoint": upstream + "/v1/chat/completions", "auth": "bearer", "key_env": "SOAK_KEY", "default": True}],
        "aliases": [{"name": "arch.soak.v1", "target": "openai/gpt-4o", "chain": ["arch.soak.v1", "openai/gpt-4o"], "pinned": True}],
        "routes": [], "default_model": "openai/gpt-4o", "routing": {}, "router": None,
        "extensions": {"gateway": {"request_limits": [{"requests": 10_000_000, "unit": "minute"}],
                                   "retries": {"max_attempts": 2, "backoff_ms": 10}, "timeouts": {"first_byte_ms": 30000}}},
    })
    path = folder / "bundle.json"
    path.write_bytes(bundle.to_bytes())
    return path


async def load(url: str, pid: int, total: int, concurrency: int, sample_every: int, time_limit: float) -> dict:
    done = issued = 0
    errors: list[str] = []
    latencies: list[float] = []
    curve: list[tuple[int, float]] = [(0, rss_mb(pid))]
    next_sample = sample_every
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(w: int) -> None:
            nonlocal done, issued, next_sample
            while issued < total and time.monotonic() - started < time_limit:
                path, body = BODIES[issued % len(BODIES)]
                issued += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url + path, json=body, headers={"authorization": "Bearer soak"}) as r:
                        payload = await r.read()
                        if r.status != 200 or (body.get("stream") and b"[DONE]" not in payload):
                            errors.append(f"{r.status} {path} {payload[:200]!r}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__} {path}")
                latencies.append(time.perf_counter() - t0)
                done += 1
                if done >= next_sample:
                    curve.append((done, rss_mb(pid)))
                    next_sample += sample_every

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"done": done, "errors": errors, "elapsed": elapsed, "curve": curve,
            "p50": latencies[len(latencies) // 2] if latencies else 0.0,
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--sample-every", type=int, default=1000)
    parser.add_argument("--time-limit", type=float, default=600.0, help="stop sending after this many seconds")
    parser.add_argument("--from-request", type=int, default=5000, help="memory growth is measured from here to the end")
    parser.add_argument("--churn", action="store_true", help="connection churn instead of keep-alive load")
    parser.add_argument("--cycles", type=int, default=60_000, help="--churn: connect-request-close cycles")
    parser.add_argument("--bare", type=int, default=20_000, help="--churn: bare connect-close cycles after them")
    args = parser.parse_args()
    if args.churn and args.concurrency == 256:
        args.concurrency = 64

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="archc-soak-") as tmp:
        folder = Path(tmp)
        try:
            up_port, gw_port = free_port(), free_port()
            upstream = f"http://127.0.0.1:{up_port}"
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "gateway.py"), "--serve-upstream", str(up_port)],
                                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(upstream + "/", 20)
            log = open(folder / "gateway.log", "wb")
            env = {**os.environ, "SOAK_KEY": "sk-soak", "PYTHONUNBUFFERED": "1"}
            gateway = subprocess.Popen([sys.executable, "-m", "archc", "serve", str(write_bundle(folder, upstream)),
                                        "--host", "127.0.0.1", "--port", str(gw_port)], cwd=ROOT, stdout=log, stderr=log, env=env)
            procs.append(gateway)
            url = f"http://127.0.0.1:{gw_port}"
            wait_http(url + "/healthz", 60)
            if args.churn:
                return report_churn(gw_port, gateway.pid, args)
            result = asyncio.run(load(url, gateway.pid, args.requests, args.concurrency, args.sample_every, args.time_limit))
            log.close()
            log_lines = (folder / "gateway.log").read_text(errors="replace").splitlines()
            access_lines = sum(1 for line in log_lines if "archc.access" in line)
            other_lines = [line for line in log_lines if "archc.access" not in line]
        finally:
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    curve = result["curve"]
    print(f"requests {result['done']} at concurrency {args.concurrency} in {result['elapsed']:.1f}s "
          f"({result['done'] / max(result['elapsed'], 1e-9):.0f} req/s), p50 {result['p50'] * 1000:.1f} ms, "
          f"p99 {result['p99'] * 1000:.1f} ms, errors {len(result['errors'])}, access-log lines {access_lines}")
    print("memory curve (requests -> gateway RSS MB):")
    for n, mb in curve:
        print(f"  {n:>7} {mb:8.1f}")
    base = next((mb for n, mb in curve if n >= args.from_request), None)
    growth = (curve[-1][1] - base) / base * 100 if base else float("nan")
    print(f"RSS growth from request {args.from_request} to {curve[-1][0]}: {growth:+.1f}% (limit +10%)")
    print(f"other gateway log lines: {len(other_lines)}" + (f" (first: {other_lines[0][:160]})" if other_lines else ""))
    for e in result["errors"][:10]:
        print("error:", e)
    ok = not result["errors"] and result["done"] >= args.requests and growth < 10.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def report_churn(port: int, pid: int, args: argparse.Namespace) -> int:
    # Warm up at the same concurrency first: the gateway's upstream pool (kept-alive connections to the
    # fake upstream, up to one per concurrent request) is part of the steady state, not a leak.
    asyncio.run(churn(port, pid, min(2000, args.cycles), args.concurrency))
    settle(port, 5.0)
    fds0, rss0 = open_fds(pid), rss_mb(pid)
    ok = True
    for label, cycles, bare in (("connect-request-close", args.cycles, False), ("bare connect-close", args.bare, True)):
        if not cycles:
            continue
        r = asyncio.run(churn(port, pid, cycles, args.concurrency, bare=bare, time_limit_s=args.time_limit))
        left, waited = settle(port, 5.0)
        print(f"{label}: {r.cycles} cycles at concurrency {args.concurrency} in {r.elapsed_s:.1f}s "
              f"({r.cycles / max(r.elapsed_s, 1e-9):.0f}/s), failures {len(r.failures)}, CLOSE_WAIT peak {r.close_wait_peak}, "
              f"left {left} after {waited:.2f}s, gateway fds peak {r.fds_peak}")
        for failure in sorted(set(r.failures))[:5]:
            print(f"  failure ({r.failures.count(failure)}x): {failure}")
        ok = ok and not r.failures and r.cycles == cycles and left == 0 and waited <= 1.0
    time.sleep(1.0)
    fds1, rss1 = open_fds(pid), rss_mb(pid)
    print(f"gateway open files {fds0} -> {fds1}, RSS {rss0:.1f} -> {rss1:.1f} MB")
    ok = ok and fds1 <= fds0 + 16 and rss1 <= rss0 * 1.25 + 8
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
