"""Instructions per request of `archc serve` under callgrind: the gateway's cost where req/s cannot tell.

On this 2-core VM one pass of bench/gateway.py swings by ±15% and four alternating passes still
by ±8%; the instructions a request costs repeat within 1%. This counts them for one tree or two,
same requests, same fake upstream: valgrind's callgrind runs `archc serve` with instrumentation off
through start-up and warm-up, on for the measured requests only. Instructions are not time (cache
misses, system calls and the kernel are not in them): use it to find and judge a change to the hot
path, and bench/gateway.py --ab for the figures in req/s.

    python bench/instructions.py cf4b00e,HEAD [--requests 400] [--concurrency 16] [--apis openai,anthropic,anthropic-pass,responses,responses-pass] [--modes json,stream]
    python bench/instructions.py HEAD --body-size 1000000 --requests 40 --concurrency 1 --modes json   # where a megabyte goes

Needs valgrind (apt-get install valgrind). Each tree takes about 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as bench  # noqa: E402  (the harness: fake upstream, bundle, trees, APIs)

Cell = tuple[str, bool]  # api, stream


def start_gateway(tree: Path, bundle: Path, folder: Path, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = bench.free_port()
    out = folder / f"{name}.callgrind"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, "-m", "archc", "serve", str(bundle), "--port", str(port), "--log-level", "warning"]
    proc = bench.start(cmd, cpu=0, env={"BENCH_OPENAI_KEY": "sk-fake", "PYTHONPATH": str(tree)},
                       log=folder / f"{name}.log", cwd=tree)
    bench.wait_http(f"http://127.0.0.1:{port}/readyz", 600)
    return proc, port, out


async def send(base: str, api: str, stream: bool, requests: int, concurrency: int, size: int = 0) -> None:
    """``requests`` requests over ``concurrency`` kept-alive connections; each must succeed. ``size``:
    the prompt grown to about that many bytes as an agent's history grows (bench/gateway.py's)."""
    path, headers, prompt = bench.APIS[api]
    body = {**(bench.sized(prompt, size, api != "openai") if size else prompt), "stream": stream}
    left = [requests]
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                response = await client.post(base + path, json=body, headers=headers)
                if response.status_code != 200 or (stream and b"data:" not in response.content):
                    raise SystemExit(f"{api} {'stream' if stream else 'json'}: {response.status_code} {response.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def collected(out: Path) -> int:
    """Instructions in the dumps of one measured cell (the ``totals:`` line of each file)."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        for line in dump.read_text(errors="replace").splitlines():
            found = re.match(r"totals:\s+(\d+)", line)
            if found:
                total += int(found.group(1))
    return total


def measure(tree: Path, bundle: Path, folder: Path, name: str, cells: list[Cell], args: argparse.Namespace) -> dict[Cell, float]:
    proc, port, out = start_gateway(tree, bundle, folder, name)
    base = f"http://127.0.0.1:{port}"
    per_request: dict[Cell, float] = {}
    try:
        for api, stream in cells:
            asyncio.run(send(base, api, stream, 50, args.concurrency, args.body_size))  # warm-up, not counted
            for dump in folder.glob(out.name + "*"):
                dump.unlink()
            control(proc.pid, "--instr=on")
            control(proc.pid, "--zero")
            asyncio.run(send(base, api, stream, args.requests, args.concurrency, args.body_size))
            control(proc.pid, "--instr=off")
            control(proc.pid, "--dump")
            for _ in range(50):  # the dump is written by the gateway's next scheduling slice
                if collected(out):
                    break
                time.sleep(0.1)
            per_request[(api, stream)] = collected(out) / args.requests
            if args.keep:  # for callgrind_annotate: where the instructions went, by C function
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for dump in folder.glob(out.name + "*"):
                    shutil.copy(dump, keep / f"{name}-{api}-{'stream' if stream else 'json'}.callgrind")
    finally:
        bench.stop(proc)
    return per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", help="one tree or two, comma-separated (git commits or source folders)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--apis", default="openai,anthropic,anthropic-pass")
    parser.add_argument("--modes", default="json,stream")
    parser.add_argument("--keep", metavar="DIR", help="keep each cell's callgrind dump here (callgrind_annotate FILE)")
    parser.add_argument("--body-size", type=int, default=0, help="bytes of history in each request (0: the short prompt)")
    args = parser.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    refs = args.trees.split(",")
    cells: list[Cell] = [(api, mode == "stream") for api in args.apis.split(",") for mode in args.modes.split(",")]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="archc-instructions-") as tmp:
        folder = Path(tmp)
        try:
            up_port = bench.free_port()
            upstream = f"http://127.0.0.1:{up_port}"
            procs.append(bench.start([sys.executable, bench.__file__, "--serve-upstream", str(up_port)], cpu=1))
            bench.wait_http(upstream + "/", 20)
            bundle = bench._bundle(folder, upstream, "responses-pass" in args.apis)
            results = [measure(bench.tree_of(ref, folder), bundle, folder, f"tree{i}", cells, args) for i, ref in enumerate(refs)]
        finally:
            for proc in procs:
                bench.stop(proc)
    prompt = f"{args.body_size} B prompt" if args.body_size else "short prompt"
    print(f"instructions per request (callgrind; {args.requests} requests over {args.concurrency} connections, "
          f"{prompt}, the bench's fake upstream), thousands")
    print("| api | mode | " + " | ".join(refs) + (" | change |" if len(refs) == 2 else " |"))
    print("|---|---|" + "---|" * (len(refs) + (len(refs) == 2)))
    for cell in cells:
        values: list[Any] = [result[cell] for result in results]
        row = f"| {cell[0]} | {'stream' if cell[1] else 'json'} | " + " | ".join(f"{v / 1000:.0f}" for v in values)
        if len(values) == 2 and values[0]:
            row += f" | {(values[1] - values[0]) / values[0] * 100:+.1f}%"
        print(row + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
