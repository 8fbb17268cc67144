"""Two gateway replicas, one router server, Redis: how often the router is asked for one agent turn.

A five-step agent turn (the user's message, then four tool calls and their results, which the
router's conversation selection drops, so every step asks for the same decision) is sent to two
`archc serve` replicas in turn, with the shared decision cache (``gateway.decision_cache`` on a
private redis-server) and without it. The router is a fake Arch-Router server on loopback that
answers each decision after ``--router-ms`` (default 150 ms, about a GPU-served Arch-Router-1.5B
decision), so that the router time is visible. Reported per setting: router invocations (what the
router server received), the router time the replicas reported (the sum of ``x-arch-router-ms``),
and the turn's wall time.

    .venv/bin/python bench/replicas.py [--router-ms 150] [--turns 5]

Needs redis-server (apt-get install redis-server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gateway as bench  # noqa: E402  (processes, ports)

import httpx  # noqa: E402

# The archgw config of the remote-router tests: the router on a server, one route ("code understanding").
from tests.runtime.router.test_e2e_remote_router import CONFIG  # noqa: E402


class FakeServers:
    """The router server (answers after ``delay_s``) and the model server, on their own loop."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.router_calls = 0
        self.loop = asyncio.new_event_loop()
        self.ports = (bench.free_port(), bench.free_port())
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            await asyncio.start_server(self._router, "127.0.0.1", self.ports[0])
            await asyncio.start_server(self._model, "127.0.0.1", self.ports[1])
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _read(self, reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        return await reader.readexactly(length)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Any, delay: float,
                     counted: bool = False) -> None:
        try:
            while True:
                await self._read(reader)
                if counted:
                    self.router_calls += 1
                if delay:
                    await asyncio.sleep(delay)
                body = json.dumps(answer).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _router(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = {"id": "r", "object": "chat.completion", "created": 1, "model": "arch",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"route": "code understanding"}'},
                               "finish_reason": "stop"}], "usage": {"prompt_tokens": 300, "completion_tokens": 8}}
        await self._serve(reader, writer, answer, self.delay_s, counted=True)

    async def _model(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}
        await self._serve(reader, writer, answer, 0.0)


def agent_turn(steps: int) -> list[list[dict[str, Any]]]:
    turn = [[{"role": "user", "content": "explain this code: def f(x): return x * 2"}]]
    for n in range(steps - 1):
        turn.append([*turn[-1], {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{n}", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"c{n}", "content": f"result {n}"}])
    return turn


def run(shared: bool, servers: FakeServers, redis_url: str, folder: Path, steps: int) -> dict[str, float]:
    config = folder / f"replicas-{shared}.yaml"
    text = CONFIG.format(router=f"http://127.0.0.1:{servers.ports[0]}", llm=f"http://127.0.0.1:{servers.ports[1]}")
    if shared:
        text += f"gateway:\n  decision_cache: {{url: '{redis_url}', ttl_s: 600}}\n"
    config.write_text(text)
    procs, urls = [], []
    for i in range(2):
        port = bench.free_port()
        procs.append(bench.start([sys.executable, "-m", "archc", "serve", str(config), "--port", str(port), "--log-level", "warning"],
                                 cpu=i % 2, log=folder / f"replica-{shared}-{i}.log"))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            bench.wait_http(url + "/readyz", 60)
        before = servers.router_calls
        router_ms = 0.0
        started = time.perf_counter()
        with httpx.Client(timeout=30) as client:
            for i, messages in enumerate(agent_turn(steps)):
                r = client.post(urls[i % 2] + "/v1/chat/completions", json={"model": "none", "messages": messages})
                if r.status_code != 200 or r.headers.get("x-arch-route") != "code understanding":
                    raise SystemExit(f"step {i}: {r.status_code} {r.headers.get('x-arch-route')} {r.text[:200]}")
                router_ms += float(r.headers["x-arch-router-ms"])
        wall_ms = (time.perf_counter() - started) * 1000
        return {"calls": servers.router_calls - before, "router_ms": router_ms, "wall_ms": wall_ms}
    finally:
        for proc in procs:
            bench.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router-ms", type=float, default=150.0)
    parser.add_argument("--turns", type=int, default=5, help="steps in the agent turn")
    args = parser.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        print("bench/replicas.py needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    servers = FakeServers(args.router_ms / 1000)
    with tempfile.TemporaryDirectory(prefix="archc-replicas-") as tmp:
        folder = Path(tmp)
        port = bench.free_port()
        redis = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                  "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            rows = {shared: run(shared, servers, f"redis://127.0.0.1:{port}/0", folder, args.turns) for shared in (True, False)}
        finally:
            redis.terminate()
            redis.wait(5)
    print(f"two replicas, a {args.turns}-step agent turn sent to each in turn; router server answers in {args.router_ms:g} ms")
    print("| decision cache | router invocations | router ms (sum of x-arch-router-ms) | turn wall ms |")
    print("|---|---|---|---|")
    for shared, label in ((True, "shared (Redis)"), (False, "per replica")):
        row = rows[shared]
        print(f"| {label} | {row['calls']:.0f} | {row['router_ms']:.1f} | {row['wall_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
