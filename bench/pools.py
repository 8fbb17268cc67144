"""What a route pool and session affinity add to a request's decision, in process: ``choose()`` for a
routed request whose route has one model, and whose route has a pool of three ranked by each policy
(runtime/decide/pool.py); then a session's lookup (runtime/decide/affinity.py: the derived name of a
Claude Code-sized conversation, 15 KB of system text and 20 tools, and the pinned-model lookup, in
process and in a private redis-server: what ``routing.session_cache: {type: redis}`` adds at c=1).

    python bench/pools.py [--number 200000] [--redis-lookups 5000]

Prints microseconds per decision (best of 5 repeats) and the pool's added cost over the one-model route.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archc.compiler import compile_source  # noqa: E402
from runtime.decide.affinity import Pin, SessionPolicy, Sessions, session_key  # noqa: E402
from runtime.decide.choose import choose  # noqa: E402
from runtime.decide.pool import PoolRanker  # noqa: E402
from runtime.router.decision import Decision  # noqa: E402

CONFIG = """version: v0.4.0
listeners: [{type: model, name: llm, port: 12000}]
model_providers:
  - {model: openai/a, access_key: $K, default: true}
  - {model: openai/b, access_key: $K}
  - {model: openai/c, access_key: $K}
model_metrics_sources: [{type: cost, provider: models.dev}]
routing_preferences:
  - {name: one, description: one model, models: [openai/a]}
  - {name: none, description: in order, models: [openai/a, openai/b, openai/c]}
  - {name: cheapest, description: by price, models: [openai/a, openai/b, openai/c], selection_policy: {prefer: cheapest}}
  - {name: fastest, description: by latency, models: [openai/a, openai/b, openai/c], selection_policy: {prefer: fastest}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--redis-lookups", type=int, default=5000, help="lookups timed against a private redis-server")
    args = parser.parse_args()
    result = compile_source(CONFIG, file="pools.yaml")
    assert result.bundle is not None, result.diagnostics
    bundle = result.bundle
    ranker = PoolRanker({"openai/a": 3.0, "openai/b": 1.0, "openai/c": 2.0})
    for name, ms in (("openai/a", 40.0), ("openai/b", 25.0), ("openai/c", 60.0)):
        ranker.observe(name, ms)
    print(f"choose() per routed request, µs (best of 5 x {args.number})")
    print("| route | µs | added over one model |")
    print("|---|---|---|")
    base = 0.0
    for route in ("one", "none", "cheapest", "fastest"):
        decision = Decision(route)
        best = min(timeit.repeat(lambda: choose(bundle, None, None, decision, ranker.rank), number=args.number, repeat=5))
        us = best / args.number * 1e6
        base = base or us
        print(f"| {route} | {us:.2f} | {us - base:+.2f} |")
    system = {"role": "system", "content": "You are Claude Code. " * 750}
    tools = [{"name": f"tool_{i}", "input_schema": {"type": "object"}} for i in range(20)]
    talk = [system, {"role": "user", "content": "fix the failing test"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "and now the docs"}]
    sessions = Sessions(SessionPolicy(affinity=True))
    sessions.keep(session_key(talk, tools) or "", Pin("openai/a", "none"))
    number = max(1, args.number // 20)
    lookup = min(timeit.repeat(lambda: sessions.lookup(session_key(talk, tools) or ""), number=number, repeat=5)) / number * 1e6
    explicit = min(timeit.repeat(lambda: sessions.lookup("h-team-7"), number=args.number, repeat=5)) / args.number * 1e6
    print(f"| affinity: derived session name + lookup (15 KB system, 20 tools) | {lookup:.2f} | |")
    print(f"| affinity: X-Model-Affinity lookup | {explicit:.2f} | |")
    redis_rows(args.redis_lookups)
    return 0


def redis_rows(count: int) -> None:
    """The pinned-session lookup in Redis (``routing.session_cache: {type: redis}``), one request at a
    time as a c=1 request awaits it: p50 and p99 of ``count`` lookups against a private redis-server,
    beside the in-process store's awaited lookup."""
    import asyncio
    import shutil
    import statistics
    import tempfile
    import time

    from runtime.live.pins import SharedSessions
    from tests.support.redis_fixtures import start_redis, stop_process

    if shutil.which("redis-server") is None:
        print("| affinity in Redis | (redis-server is not installed: apt-get install redis-server) | |")
        return

    async def timed(store: Any) -> list[float]:
        await store.pin("h-team-7", Pin("openai/a", "none"))
        took = []
        for _ in range(count):
            started = time.perf_counter()
            assert await store.get("h-team-7") is not None
            took.append((time.perf_counter() - started) * 1e6)
        return took

    with tempfile.TemporaryDirectory() as folder:
        proc, url = start_redis(Path(folder))
        try:
            policy = SessionPolicy(affinity=True)
            memory = asyncio.run(timed(Sessions(policy)))

            async def shared() -> list[float]:
                store = SharedSessions(policy, url)
                try:
                    await timed(store)  # warm: the connection is open
                    return await timed(store)
                finally:
                    await store.aclose()

            remote = asyncio.run(shared())
        finally:
            stop_process(proc)
    for name, took in (("in process (awaited)", memory), ("in Redis (loopback)", remote)):
        q = statistics.quantiles(took, n=100)
        print(f"| affinity: X-Model-Affinity lookup {name}, p50 / p99 | {statistics.median(took):.1f} / {q[98]:.1f} | |")


if __name__ == "__main__":
    raise SystemExit(main())
