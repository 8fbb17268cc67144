"""archc CLI: `archc claude` (Claude Code through the gateway, status line included) and `archc statusline`.

Top of the stack: imports the compiler, `archc.statusline` and the standard library; starts
`archc serve` as a process (never imports the runtime), and stops what it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
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
from typing import Iterator, Sequence

from archc import statusline
from archc.bundle import Bundle
from archc.compiler import CompileError, bundle_from_path
from archc.diagnostics import EXIT_ERRORS, EXIT_OK, EXIT_USAGE

EXIT_NOT_FOUND = 127  # the shell's "command not found"

SMALL_FAST_ALIAS = "arch.claude.code.small.fast"  # archgw's convention for Claude Code's small model
PLACEHOLDER_TOKEN = "archc-local"  # sent when the gateway has no keys: Claude Code wants some token
DEFAULT_PORT = 12000
CONFIG_NAMES = ("config.yaml", "arch_config.yaml", "plano_config.yaml")
# Variables Claude Code reads that would point it somewhere other than the gateway.
_CLEARED_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")


@dataclass
class _Gateway:
    """The gateway Claude Code talks to; ``process`` is set only when we started it."""

    url: str
    bundle: Bundle | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    models: list[str] = field(default_factory=list)


class _LaunchError(Exception):
    """A clean, user-facing failure: message printed to stderr, then ``code`` returned."""

    def __init__(self, message: str, code: int = EXIT_ERRORS) -> None:
        super().__init__(message)
        self.code = code


class _Terminated(BaseException):
    """SIGTERM or SIGHUP before claude runs: unwind (stopping a gateway we started), exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "claude",
        help="run Claude Code through the gateway (starting one if needed)",
        description="Run Claude Code with its requests routed by archc. Arguments after `--` go to claude.",
    )
    _add_claude_options(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[CONFIG_OR_BUNDLE] [-- CLAUDE_ARGS...]",
                   help="config or bundle (default: ./config.yaml); everything after `--` goes to claude")
    p.set_defaults(handler=run_claude)

    s = sub.add_parser("statusline", help="print the routing status for Claude Code's status line (reads its JSON on stdin)")
    statusline.add_arguments(s)
    s.set_defaults(handler=run_statusline)


def _add_claude_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="use the gateway at this base URL; never start one")
    p.add_argument("--port", type=int, help="port for the gateway (default: the config's model listener, else 12000)")
    p.add_argument("--model-dir", help="router model directory, passed to `archc serve`")
    p.add_argument("--echo", action="store_true", default=None,
                   help="providers whose key variable is unset answer with the built-in echo upstream (`archc serve --echo`)")
    p.add_argument("--claude-bin", help="path of the claude command (default: PATH, then ./.tools/node_modules/.bin)")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the gateway to be ready")


# -- archc claude --------------------------------------------------------------------------------


def run_claude(args: argparse.Namespace) -> int:
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    gateway: _Gateway | None = None
    try:
        options, claude_args = _parse_rest(args)
        claude_bin = find_claude(options.claude_bin)
        gateway = _prepare_gateway(options)  # stops what it started if it fails or is interrupted
        _say_how_it_routes(gateway)
        return _run_claude_process(claude_bin, gateway, claude_args)
    except _LaunchError as exc:
        print(f"archc claude: {exc}", file=sys.stderr)
        return exc.code
    except _Terminated as exc:
        return 128 + exc.signum
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parse_rest(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """Split ``rest`` at the first ``--``: the head holds CONFIG and options, the tail is claude's."""
    rest = list(args.rest or [])
    if "--" in rest:
        cut = rest.index("--")
        head, tail = rest[:cut], rest[cut + 1 :]
    else:
        head, tail = rest, []
    # Options given before CONFIG were parsed already; they are the defaults for the rest.
    inner = argparse.ArgumentParser(prog="archc claude", add_help=False, exit_on_error=False)
    _add_claude_options(inner)
    inner.add_argument("config", nargs="?")
    inner.set_defaults(**{k: v for k, v in vars(args).items() if k in ("url", "port", "model_dir", "echo", "claude_bin", "startup_timeout")})
    try:
        parsed, unknown = inner.parse_known_args(head)
    except argparse.ArgumentError as exc:
        raise _LaunchError(f"{exc} (see `archc claude --help`)", EXIT_USAGE) from exc
    if unknown:
        raise _LaunchError(f"unexpected arguments {' '.join(unknown)!r}; put Claude Code's arguments after `--`", EXIT_USAGE)
    return parsed, tail


def find_claude(explicit: str | None = None) -> str:
    """The claude executable: --claude-bin, PATH, then ./.tools/node_modules/.bin (where `make test` installs it)."""
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise _LaunchError(f"claude not found at {explicit}", EXIT_NOT_FOUND)
    found = shutil.which("claude")
    if found:
        return found
    candidate = Path.cwd() / ".tools" / "node_modules" / ".bin" / "claude"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise _LaunchError(
        "Claude Code is not installed (no `claude` on PATH or in ./.tools/node_modules/.bin).\n"
        "Install it with: npm install -g @anthropic-ai/claude-code",
        EXIT_NOT_FOUND,
    )


def _prepare_gateway(options: argparse.Namespace) -> _Gateway:
    if options.url:
        url = options.url.rstrip("/")
        if not statusline.answers(url + "/healthz", 2.0):
            raise _LaunchError(f"no gateway answers at {url} (GET /healthz failed)")
        return _Gateway(url=url, models=_list_models(url))
    config = _find_config(options.config)
    bundle = _compile(config)
    host, port = _listener(bundle, options.port)
    url = f"http://{host}:{port}"
    if statusline.answers(url + "/healthz", 1.0):
        return _running_gateway(url, bundle)
    gateway = _Gateway(url=url, bundle=bundle)
    extra = (["--model-dir", options.model_dir] if options.model_dir else []) + (["--echo"] if options.echo else [])
    start_gateway(gateway, config, host, port, extra, options.startup_timeout)
    return gateway


def _running_gateway(url: str, bundle: Bundle) -> _Gateway:
    """Something answers on the listener: use it if it is an archc gateway, say so if its bundle differs."""
    try:
        ready = statusline.get_json(url + "/readyz", 2.0)
    except (urllib.error.URLError, OSError, ValueError):
        ready = None
    serving = ready.get("bundle") if isinstance(ready, dict) else None
    if not isinstance(serving, str):
        raise _LaunchError(f"something other than an archc gateway answers at {url}; pick another port with --port")
    print(f"archc claude: using the gateway already running at {url}", file=sys.stderr)
    if serving != bundle.digest:
        print(f"archc claude: warning: it serves bundle {serving[:19]}, not this config's {bundle.digest[:19]}; "
              "stop it (or use --port) to run this config", file=sys.stderr)
        return _Gateway(url=url, models=_list_models(url))
    return _Gateway(url=url, bundle=bundle, models=_list_models(url))


def _say_how_it_routes(gateway: _Gateway) -> None:
    """One line on stderr when routing cannot happen, so a user knows why every turn falls back."""
    try:
        ready = statusline.get_json(gateway.url + "/readyz", 2.0)
    except (urllib.error.URLError, OSError, ValueError):
        return
    reason = ready.get("router_reason") if isinstance(ready, dict) else None
    if reason == "no_router_model":
        print("archc claude: warning: the gateway has no router model, so every turn goes to the requested or "
              "default model; install one with `archc model pull` or pass --model-dir", file=sys.stderr)
    elif reason == "error":
        print("archc claude: warning: the gateway's router model failed to load (see its log); every turn falls back",
              file=sys.stderr)


def _find_config(config: str | None) -> Path:
    if config:
        path = Path(config)
        if not path.is_file():
            raise _LaunchError(f"{config}: no such file")
        return path
    for name in CONFIG_NAMES:
        if Path(name).is_file():
            return Path(name)
    raise _LaunchError(f"no config given and none of {', '.join(CONFIG_NAMES)} here; usage: archc claude CONFIG [-- CLAUDE_ARGS...]", EXIT_USAGE)


def _compile(config: Path) -> Bundle:
    try:
        return bundle_from_path(config)
    except CompileError as exc:
        raise _LaunchError(f"{config} does not compile:\n{exc}") from exc


def _listener(bundle: Bundle, port: int | None) -> tuple[str, int]:
    """Loopback host and port of the bundle's model listener (``--port`` wins)."""
    chosen = next((item for item in bundle.listeners if item.kind == "model"), None) or next(iter(bundle.listeners), None)
    if port is None:
        port = chosen.port if chosen else DEFAULT_PORT
    address = chosen.address if chosen else "127.0.0.1"
    # We start the gateway on loopback; one bound to every address is reached the same way.
    host = "127.0.0.1" if address in ("0.0.0.0", "::", "", "localhost") else address
    return host, port


def start_gateway(gateway: _Gateway, config: Path, host: str, port: int, extra: Sequence[str], timeout: float) -> None:
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
    print(f"archc claude: started a gateway at {gateway.url} (log: {gateway.log_path})", file=sys.stderr)


def _wait_ready(gateway: _Gateway, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _LaunchError(f"the gateway exited with code {proc.returncode} before it was ready:\n{_tail(gateway.log_path)}")
        if statusline.answers(gateway.url + "/readyz", 0.5):
            return
        time.sleep(0.1)
    raise _LaunchError(f"the gateway was not ready after {timeout:.0f} s:\n{_tail(gateway.log_path)}")


def stop_gateway(gateway: _Gateway, grace: float = 5.0) -> None:
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


def claude_env(gateway: _Gateway, base: dict[str, str] | None = None) -> dict[str, str]:
    """Claude Code's environment: the gateway's URL and token, the small/fast alias when defined."""
    env = dict(os.environ if base is None else base)
    for name in _CLEARED_ENV:
        env.pop(name, None)
    env["ANTHROPIC_BASE_URL"] = gateway.url
    env["ANTHROPIC_AUTH_TOKEN"] = _gateway_token(gateway.bundle, env)
    if _defines_small_fast(gateway):
        env["ANTHROPIC_SMALL_FAST_MODEL"] = SMALL_FAST_ALIAS
        env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = SMALL_FAST_ALIAS
    return env


def _defines_small_fast(gateway: _Gateway) -> bool:
    if gateway.bundle is not None:
        return gateway.bundle.alias(SMALL_FAST_ALIAS) is not None
    return SMALL_FAST_ALIAS in gateway.models


def _gateway_token(bundle: Bundle | None, env: dict[str, str]) -> str:
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


def claude_command(claude_bin: str, gateway_url: str, claude_args: Sequence[str]) -> list[str]:
    """claude with our status line, unless the user passes their own --settings."""
    if any(a == "--settings" or a.startswith("--settings=") for a in claude_args):
        return [claude_bin, *claude_args]
    # `python -m archc.statusline` skips the full CLI's imports: Claude Code runs it after every message.
    status_cmd = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "archc.statusline", "--url", gateway_url))
    settings = {"statusLine": {"type": "command", "command": status_cmd, "padding": 0}}
    return [claude_bin, "--settings", json.dumps(settings), *claude_args]


def _run_claude_process(claude_bin: str, gateway: _Gateway, claude_args: Sequence[str]) -> int:
    """Run claude in the foreground; Ctrl-C belongs to claude, SIGTERM/SIGHUP are passed on."""
    cmd = claude_command(claude_bin, gateway.url, claude_args)
    try:
        proc = subprocess.Popen(cmd, env=claude_env(gateway))
    except OSError as exc:
        raise _LaunchError(f"cannot run {claude_bin}: {exc.strerror or exc}", EXIT_NOT_FOUND) from exc

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


# -- archc statusline (the work is in archc/statusline.py, which Claude Code runs directly) ---------------


def run_statusline(args: argparse.Namespace) -> int:
    """Print one line; always exit 0 (a failing status line command blanks Claude Code's line)."""
    try:
        raw = sys.stdin.read()
    except (OSError, UnicodeDecodeError):
        raw = ""
    print(statusline.text_for_input(raw, args.url, args.timeout))
    return EXIT_OK


def _list_models(url: str) -> list[str]:
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
