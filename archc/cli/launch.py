"""What `archc claude` and `archc codex` share: find or start the gateway for a config, find the
agent's executable, hand the agent the gateway's key, and stop what was started.

Top of the stack: imports the compiler, `archc.statusline` (its small HTTP helpers) and the standard
library; starts `archc serve` as a process (never imports the runtime).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Callable, Iterator, Sequence

from archc import statusline
from archc.bundle import Bundle
from archc.compiler import CompileError, bundle_from_path
from archc.diagnostics import EXIT_ERRORS, EXIT_USAGE

EXIT_NOT_FOUND = 127  # the shell's "command not found"
PLACEHOLDER_TOKEN = "archc-local"  # sent when the gateway has no keys: agents want some token
DEFAULT_PORT = 12000
CONFIG_NAMES = ("config.yaml", "arch_config.yaml", "plano_config.yaml")


@dataclass
class Gateway:
    """The gateway the agent talks to; ``process`` is set only when we started it."""

    url: str
    bundle: Bundle | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    models: list[str] = field(default_factory=list)


class LaunchError(Exception):
    """A clean, user-facing failure: message printed to stderr, then ``code`` returned."""

    def __init__(self, message: str, code: int = EXIT_ERRORS) -> None:
        super().__init__(message)
        self.code = code


class Terminated(BaseException):
    """SIGTERM or SIGHUP before the agent runs: unwind (stopping a gateway we started), exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def prepare_gateway(options: argparse.Namespace, prog: str, usage: str) -> Gateway:
    """The gateway at ``--url``, else the one already serving CONFIG's listener, else one we start."""
    if options.url:
        url = options.url.rstrip("/")
        if not statusline.answers(url + "/healthz", 2.0):
            raise LaunchError(f"no gateway answers at {url} (GET /healthz failed)")
        return Gateway(url=url, models=list_models(url))
    config = find_config(options.config, usage)
    bundle = compile_config(config)
    host, port = listener(bundle, options.port)
    url = f"http://{host}:{port}"
    if statusline.answers(url + "/healthz", 1.0):
        return _running_gateway(url, bundle, prog)
    gateway = Gateway(url=url, bundle=bundle)
    extra = (["--model-dir", options.model_dir] if options.model_dir else []) + (["--echo"] if options.echo else [])
    start_gateway(gateway, config, host, port, extra, options.startup_timeout, prog)
    return gateway


def _running_gateway(url: str, bundle: Bundle, prog: str) -> Gateway:
    """Something answers on the listener: use it if it is an archc gateway, say so if its bundle differs."""
    try:
        ready = statusline.get_json(url + "/readyz", 2.0)
    except (urllib.error.URLError, OSError, ValueError):
        ready = None
    serving = ready.get("bundle") if isinstance(ready, dict) else None
    if not isinstance(serving, str):
        raise LaunchError(f"something other than an archc gateway answers at {url}; pick another port with --port")
    print(f"{prog}: using the gateway already running at {url}", file=sys.stderr)
    if serving != bundle.digest:
        print(f"{prog}: warning: it serves bundle {serving[:19]}, not this config's {bundle.digest[:19]}; "
              "stop it (or use --port) to run this config", file=sys.stderr)
        return Gateway(url=url, models=list_models(url))
    return Gateway(url=url, bundle=bundle, models=list_models(url))


def say_how_it_routes(gateway: Gateway, prog: str) -> None:
    """One line on stderr when routing cannot happen, so a user knows why every turn falls back."""
    try:
        ready = statusline.get_json(gateway.url + "/readyz", 2.0)
    except (urllib.error.URLError, OSError, ValueError):
        return
    reason = ready.get("router_reason") if isinstance(ready, dict) else None
    if reason == "no_router_model":
        print(f"{prog}: warning: the gateway has no router model, so every turn goes to the requested or "
              "default model; install one with `archc model pull` or pass --model-dir", file=sys.stderr)
    elif reason == "error":
        print(f"{prog}: warning: the gateway's router model failed to load (see its log); every turn falls back",
              file=sys.stderr)


def find_config(config: str | None, usage: str) -> Path:
    if config:
        path = Path(config)
        if not path.is_file():
            raise LaunchError(f"{config}: no such file")
        return path
    for name in CONFIG_NAMES:
        if Path(name).is_file():
            return Path(name)
    raise LaunchError(f"no config given and none of {', '.join(CONFIG_NAMES)} here; usage: {usage}", EXIT_USAGE)


def compile_config(config: Path) -> Bundle:
    try:
        return bundle_from_path(config)
    except CompileError as exc:
        raise LaunchError(f"{config} does not compile:\n{exc}") from exc


def listener(bundle: Bundle, port: int | None) -> tuple[str, int]:
    """Loopback host and port of the bundle's model listener (``--port`` wins)."""
    chosen = next((item for item in bundle.listeners if item.kind == "model"), None) or next(iter(bundle.listeners), None)
    if port is None:
        port = chosen.port if chosen else DEFAULT_PORT
    address = chosen.address if chosen else "127.0.0.1"
    # We start the gateway on loopback; one bound to every address is reached the same way.
    host = "127.0.0.1" if address in ("0.0.0.0", "::", "", "localhost") else address
    return host, port


def start_gateway(gateway: Gateway, config: Path, host: str, port: int, extra: Sequence[str], timeout: float,
                  prog: str) -> None:
    """Start `archc serve` in its own process group, logging to a file, and wait for /readyz."""
    log = tempfile.NamedTemporaryFile(prefix="archc-serve-", suffix=".log", delete=False)
    gateway.log_path = Path(log.name)
    cmd = [sys.executable, "-m", "archc", "serve", str(config), "--host", host, "--port", str(port), *extra]
    with log:
        gateway.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(gateway, gateway.process, timeout)
    except BaseException:  # not ready, Ctrl-C, SIGTERM: never leave it behind
        stop_gateway(gateway)
        raise
    print(f"{prog}: started a gateway at {gateway.url} (log: {gateway.log_path})", file=sys.stderr)


def _wait_ready(gateway: Gateway, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"the gateway exited with code {proc.returncode} before it was ready:\n{_tail(gateway.log_path)}")
        if statusline.answers(gateway.url + "/readyz", 0.5):
            return
        time.sleep(0.1)
    raise LaunchError(f"the gateway was not ready after {timeout:.0f} s:\n{_tail(gateway.log_path)}")


def stop_gateway(gateway: Gateway, grace: float = 5.0) -> None:
    """Stop the gateway we started (its whole process group): SIGTERM, then SIGKILL after ``grace``."""
    proc = gateway.process
    if proc is None:
        return
    with _signals_held():  # a second Ctrl-C must not interrupt the cleanup
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        # Whatever the leader left in its group (workers) goes too.
        _signal_group(proc, signal.SIGKILL)
        gateway.process = None
        if gateway.log_path is not None:
            gateway.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def gateway_token(bundle: Bundle | None, env: dict[str, str]) -> str:
    """ARCHC_GATEWAY_KEY, else the first configured key given as an environment reference, else a placeholder."""
    if env.get("ARCHC_GATEWAY_KEY"):
        return env["ARCHC_GATEWAY_KEY"]
    for ref in _key_refs(bundle):
        name = ref.strip().removeprefix("$").strip("{}")
        if ref.strip().startswith("$") and env.get(name):
            return env[name]
    return PLACEHOLDER_TOKEN


def _key_refs(bundle: Bundle | None) -> Iterator[str]:
    gateway = bundle.extensions.get("gateway") if bundle is not None else None
    keys = gateway.get("keys") if isinstance(gateway, dict) else None
    for item in keys if isinstance(keys, list) else []:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                if isinstance(value, str):
                    yield value


def list_models(url: str) -> list[str]:
    try:
        data = statusline.get_json(url + "/v1/models", 2.0)
    except (urllib.error.URLError, OSError, ValueError):
        return []
    items = data.get("data") if isinstance(data, dict) else None
    return [m["id"] for m in items or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("  " + line for line in text.splitlines()[-lines:])


def find_tool(name: str, display: str, explicit: str | None, install: str) -> str:
    """An agent's executable: ``explicit``, else PATH, else ./.tools/node_modules/.bin (where `make
    test` installs it); ``install`` says how to get it."""
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise LaunchError(f"{name} not found at {explicit}", EXIT_NOT_FOUND)
    found = shutil.which(name)
    if found:
        return found
    candidate = Path.cwd() / ".tools" / "node_modules" / ".bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise LaunchError(f"{display} is not installed (no `{name}` on PATH or in ./.tools/node_modules/.bin).\n"
                      f"Install it with: {install}", EXIT_NOT_FOUND)


def run_foreground(cmd: Sequence[str], env: dict[str, str]) -> int:
    """Run the agent in the foreground: Ctrl-C belongs to it (it reaches the whole terminal group),
    SIGTERM/SIGHUP are passed on; its exit code is returned."""
    try:
        proc = subprocess.Popen(list(cmd), env=env)
    except OSError as exc:
        raise LaunchError(f"cannot run {cmd[0]}: {exc.strerror or exc}", EXIT_NOT_FOUND) from exc

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGINT and proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def add_gateway_options(p: argparse.ArgumentParser, agent: str) -> None:
    """The options every agent launcher takes: which gateway, how to start one, where ``agent`` is."""
    p.add_argument("--url", help="use the gateway at this base URL; never start one")
    p.add_argument("--port", type=int, help="port for the gateway (default: the config's model listener, else 12000)")
    p.add_argument("--model-dir", help="router model directory, passed to `archc serve`")
    p.add_argument("--echo", action="store_true", default=None,
                   help="providers whose key variable is unset answer with the built-in echo upstream (`archc serve --echo`)")
    p.add_argument(f"--{agent}-bin", help=f"path of the {agent} command (default: PATH, then ./.tools/node_modules/.bin)")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the gateway to be ready")


def parse_rest(args: argparse.Namespace, prog: str, add_options: Callable[[argparse.ArgumentParser], None],
               agent: str) -> tuple[argparse.Namespace, list[str]]:
    """Split ``args.rest`` at the first ``--``: the head holds CONFIG and options (those given before
    CONFIG were parsed already and are the defaults), the tail is the agent's own arguments."""
    rest = list(args.rest or [])
    head, tail = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
    inner = argparse.ArgumentParser(prog=prog, add_help=False, exit_on_error=False)
    add_options(inner)
    inner.add_argument("config", nargs="?")
    inner.set_defaults(**{k: v for k, v in vars(args).items() if k not in ("rest", "handler", "command", "config")})
    try:
        parsed, unknown = inner.parse_known_args(head)
    except argparse.ArgumentError as exc:
        raise LaunchError(f"{exc} (see `{prog} --help`)", EXIT_USAGE) from exc
    if unknown:
        raise LaunchError(f"unexpected arguments {' '.join(unknown)!r}; put {agent}'s arguments after `--`", EXIT_USAGE)
    return parsed, tail


def run_launcher(prog: str, body: Callable[[list[Gateway]], int]) -> int:
    """``body(started)`` with SIGTERM/SIGHUP turned into a clean unwind: a LaunchError is printed as
    ``prog: message`` and its code returned, and every gateway ``body`` put in ``started`` is stopped."""
    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    started: list[Gateway] = []
    try:
        return body(started)
    except LaunchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.code
    except Terminated as exc:
        return 128 + exc.signum
    finally:
        for gateway in started:
            stop_gateway(gateway)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
