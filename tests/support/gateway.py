"""Start `archc serve` as a real subprocess on a free loopback port, wait for /readyz, stop it.

Test support. The gateway's output goes to a log file, read back with ``logs()`` (and shown
when it fails to start, so a broken start says why).

    with Gateway(bundle_path, env={"OPENAI_API_KEY": "sk-test"}) as gw:
        openai.OpenAI(base_url=gw.url + "/v1", api_key="x")...
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx

from archc.bundle import Bundle, seal


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_bundle(folder: Path, bundle: Bundle | Mapping[str, Any], name: str = "bundle.json") -> Path:
    """Seal (when given a dict) and write a bundle file; returns its path."""
    if not isinstance(bundle, Bundle):
        bundle = seal(bundle)
    path = Path(folder) / name
    path.write_bytes(bundle.to_bytes())
    return path


class GatewayFailed(RuntimeError):
    pass


class Gateway:
    """One `archc serve` process. ``args`` are extra CLI arguments; ``env`` extends os.environ."""

    def __init__(
        self,
        config: Path | str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        cmd_prefix: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.config = Path(config)
        self.args = list(args)
        self.port = port or free_port()
        self.cmd_prefix = list(cmd_prefix)
        self.startup_timeout = startup_timeout
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="archc-gateway-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [*self.cmd_prefix, sys.executable, "-m", "archc", "serve", str(self.config),
                "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def start(self) -> "Gateway":
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self._cleanup_log_handle()
                    raise GatewayFailed(f"archc serve exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    if client.get(self.url + "/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise GatewayFailed(f"archc serve not ready after {self.startup_timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
            code = proc.returncode
        self._cleanup_log_handle()
        return code

    def _cleanup_log_handle(self) -> None:
        if not self._log.closed:
            self._log.close()

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def provider(name: str, endpoint: str, *, wire: str = "openai_chat", auth: str = "none", key_env: str | None = None,
             default: bool = False, **extra: Any) -> dict[str, Any]:
    """A bundle provider entry (``name`` is ``prefix/model``)."""
    prefix, _, model = name.partition("/")
    return {"name": name, "provider": prefix, "model": model or name, "wire": wire, "endpoint": endpoint,
            "auth": auth, "key_env": key_env, "default": default, **extra}


def bundle_dict(providers: Sequence[Mapping[str, Any]], *, aliases: Mapping[str, str] | None = None,
                routes: Sequence[tuple[str, str, str]] = (), default_model: str | None = None,
                routing: Mapping[str, Any] | None = None, router: Mapping[str, Any] | None = None,
                extensions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A minimal bundle dict for ``seal``; ``routes`` are (name, description, provider name)."""
    default = default_model or next((p["name"] for p in providers if p.get("default")), None)
    return {
        "source": {"path": "tests"},
        "listeners": [],
        "providers": list(providers),
        "aliases": [{"name": a, "target": t, "chain": [a, t], "pinned": False} for a, t in (aliases or {}).items()],
        "routes": [{"name": n, "description": d, "model": m} for n, d, m in routes],
        "default_model": default,
        "routing": dict(routing or {}),
        "router": dict(router) if router else None,
        "extensions": dict(extensions or {}),
    }
