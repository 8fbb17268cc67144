"""Connection churn against a gateway: connect, one request, close (or connect and close, sending
nothing), as fast as ``concurrency`` workers can, while the gateway's sockets and files are counted.

Used by tests/runtime/http/test_e2e_churn.py (small counts) and `bench/soak.py --churn` (60,000 cycles).
Raw sockets on asyncio streams: the client keeps nothing open between cycles, and never says
``connection: close``; the socket is closed by the client after the answer, as pooled clients do
when they drop a connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Iterator
from dataclasses import dataclass, field

REQUESTS = [
    ("POST", "/v1/chat/completions", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}),
    ("POST", "/v1/messages", {"model": "openai/gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi."}]}),
    ("GET", "/healthz", None),
]
_CLOSE_WAIT = "08"  # the TCP state number in /proc/net/tcp


def _request_bytes(method: str, path: str, body: dict | None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer churn\r\n"
    if body is not None:
        head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
    return (head + "\r\n").encode() + data


_WIRE = [_request_bytes(*r) for r in REQUESTS]


def _tcp_rows() -> Iterator[list[str]]:
    """Every row of the kernel's TCP tables (IPv4 and IPv6), split into its fields."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    yield line.split()
        except FileNotFoundError:
            continue


def _local_port(row: list[str]) -> int:
    return int(row[1].rsplit(":", 1)[1], 16)


def close_wait(port: int) -> int:
    """Sockets in CLOSE_WAIT on local ``port`` (the gateway's side of connections the client closed)."""
    return sum(1 for row in _tcp_rows() if row[3] == _CLOSE_WAIT and _local_port(row) == port)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


_LISTEN = "0A"


def client_sockets(pid: int, port: int) -> int:
    """The process's open sockets on local ``port`` other than its listener: client connections it still holds
    (its upstream pool's sockets, whose number depends on how requests interleaved, are not counted)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return sum(1 for row in _tcp_rows() if row[3] != _LISTEN and row[9] in inodes and _local_port(row) == port)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


@dataclass
class ChurnResult:
    cycles: int = 0
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    close_wait_peak: int = 0
    fds_peak: int = 0


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        return status, await reader.readexactly(length)
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]
    return status, await reader.read()


async def churn(port: int, pid: int, cycles: int, concurrency: int, *, bare: bool = False,
                time_limit_s: float = 300.0) -> ChurnResult:
    """``cycles`` connections, each one request then close (``bare``: close at once, nothing sent).
    A request fails unless it gets a 200; CLOSE_WAIT and the gateway's open files are sampled."""
    result = ChurnResult()
    issued = 0
    started = time.monotonic()
    stop_sampling = asyncio.Event()

    async def sample() -> None:
        while not stop_sampling.is_set():
            result.close_wait_peak = max(result.close_wait_peak, close_wait(port))
            result.fds_peak = max(result.fds_peak, open_fds(pid))
            try:
                await asyncio.wait_for(stop_sampling.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    async def worker() -> None:
        nonlocal issued
        while issued < cycles and time.monotonic() - started < time_limit_s:
            n = issued
            issued += 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            except (OSError, asyncio.TimeoutError) as exc:
                result.failures.append(f"connect: {type(exc).__name__}: {exc}")
                continue
            try:
                if not bare:
                    writer.write(_WIRE[n % len(_WIRE)])
                    status, body = await asyncio.wait_for(_read_answer(reader), 30)
                    if status != 200:
                        result.failures.append(f"{status}: {body[:160]!r}")
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                result.failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                writer.close()
            result.cycles += 1

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.monotonic() - started
    stop_sampling.set()
    await sampler
    return result


def settle(port: int, seconds: float = 3.0) -> tuple[int, float]:
    """Wait up to ``seconds`` for the gateway's CLOSE_WAIT sockets to go; (count left, seconds waited)."""
    started = time.monotonic()
    while True:
        left = close_wait(port)
        waited = time.monotonic() - started
        if left == 0 or waited >= seconds:
            return left, waited
        time.sleep(0.05)
