"""`archc claude` and `archc statusline`: real processes (archc, archc serve, Claude Code).

The launcher starts a gateway when none answers, runs claude against it, and leaves nothing
behind (also on Ctrl-C); it fails cleanly without claude or with a broken config.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Callable

import httpx
import pyte
import pytest

from archc import statusline
from archc.cli import claude as launcher
from archc.cli import launch
from tests.runtime.test_e2e_claude_routing import GENERATE_INTENT, main_requests, write_config
from tests.support.fake_upstream import FakeUpstream, Response, openai_text
from tests.support.gateway import Gateway, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def launcher_env(home: Path, claude_dir: str | None) -> dict[str, str]:
    """What a user's shell gives `archc claude`: PATH (with or without claude), a scratch HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "claude").exists()]
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join(([claude_dir] if claude_dir else []) + path),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        ANTHROPIC_API_KEY="sk-ant-must-not-reach-claude",
    )
    return env


def archc_claude(home: Path, *args: str, claude_dir: str | None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archc", "claude", *args], env=launcher_env(home, claude_dir), cwd=home,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def serve_processes(marker: str) -> list[int]:
    """Live `archc serve` processes whose command line mentions ``marker`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "serve" in words and any("archc" in w for w in words) and any(marker in w for w in words) and state != "Z":
            found.append(int(entry.name))
    return found


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def claude_dir(claude_bin: str) -> str:
    return str(Path(claude_bin).parent)


def test_print_mode_through_a_started_gateway(tmp_path: Path, claude_home: Path, claude_dir: str,
                                              fake_upstream: FakeUpstream, branching_router_model: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, fake_upstream.url, port=port)
    fake_upstream.script(openai_text("a sorted() one-liner"))
    proc = archc_claude(claude_home, str(config), "--model-dir", str(branching_router_model), "--", "-p", GENERATE_INTENT,
                        claude_dir=claude_dir)
    assert proc.returncode == 0, proc.stderr
    assert "a sorted() one-liner" in proc.stdout
    assert f"started a gateway at http://127.0.0.1:{port}" in proc.stderr and "warning" not in proc.stderr
    turn = main_requests(fake_upstream)
    assert [r.body["model"] for r in turn] == ["gpt-gen"]  # routed by the tiny router model
    # Claude Code spoke to the gateway with the launcher's token, not the user's Anthropic key.
    assert "sk-ant-must-not-reach-claude" not in json.dumps([r.headers for r in fake_upstream.requests])
    assert serve_processes(str(config)) == [] and port_is_closed(port)


def test_uses_a_gateway_given_by_url_and_leaves_it_running(tmp_path: Path, claude_home: Path, claude_dir: str,
                                                          fake_upstream: FakeUpstream,
                                                          start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(write_config(tmp_path, fake_upstream.url))
    fake_upstream.script(openai_text("via the running gateway"))
    proc = archc_claude(claude_home, "--url", gw.url, "--", "-p", "hello", claude_dir=claude_dir)
    assert proc.returncode == 0, proc.stderr
    assert "via the running gateway" in proc.stdout and "started a gateway" not in proc.stderr
    assert httpx.get(gw.url + "/readyz", timeout=5).status_code == 200  # not ours to stop


def test_reuses_a_gateway_already_on_the_configured_listener(tmp_path: Path, claude_home: Path, claude_dir: str,
                                                            fake_upstream: FakeUpstream,
                                                            start_gateway: Callable[..., Gateway]) -> None:
    port = free_port()
    config = write_config(tmp_path, fake_upstream.url, port=port)
    gw = start_gateway(config, port=port, args=["--model-dir", str(tmp_path / "no-model-here")])
    proc = archc_claude(claude_home, str(config), "--", "-p", "hello", claude_dir=claude_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"using the gateway already running at http://127.0.0.1:{port}" in proc.stderr
    assert "warning: it serves" not in proc.stderr
    # That gateway was started without a router model: the user is told why nothing gets routed.
    assert "warning: the gateway has no router model" in proc.stderr
    assert httpx.get(gw.url + "/readyz", timeout=5).status_code == 200
    # Another config on the same listener: that gateway is used all the same, with a warning.
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text(encoding="utf-8").replace("explicit_model_bypass: true", "timeout_ms: 900\n"
                     "  explicit_model_bypass: true"), encoding="utf-8")
    edited = archc_claude(claude_home, str(other), "--", "-p", "hello", claude_dir=claude_dir)
    assert edited.returncode == 0, edited.stderr
    assert "warning: it serves bundle sha256:" in edited.stderr and "stop it (or use --port)" in edited.stderr


def test_ctrl_c_stops_claude_and_the_gateway(tmp_path: Path, claude_home: Path, claude_dir: str,
                                             fake_upstream: FakeUpstream) -> None:
    port = free_port()
    config = write_config(tmp_path, fake_upstream.url, port=port)
    # The upstream never finishes its answer: Claude Code waits until interrupted.
    fake_upstream.script(lambda fmt, body: Response(events=[(None, json.dumps({
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "thinking"}, "finish_reason": None}]}))],
        hold_open=True))
    proc = subprocess.Popen([sys.executable, "-m", "archc", "claude", str(config), "--", "-p", "take your time"],
                            env=launcher_env(claude_home, claude_dir), cwd=claude_home, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not main_requests(fake_upstream) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert main_requests(fake_upstream), "Claude Code never reached the upstream"
        assert serve_processes(str(config)), "the launcher's gateway is not running"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    # claude decides its own exit status on SIGINT (0 in -p mode today); the launcher passes it on.
    assert proc.returncode is not None and "Traceback" not in err.decode()
    assert serve_processes(str(config)) == [] and port_is_closed(port)


def test_missing_claude_fails_cleanly(tmp_path: Path, claude_home: Path, fake_upstream: FakeUpstream) -> None:
    config = write_config(tmp_path, fake_upstream.url, port=free_port())
    proc = archc_claude(claude_home, str(config), "--", "-p", "hello", claude_dir=None)
    assert proc.returncode == 127
    assert "Claude Code is not installed" in proc.stderr and "npm install -g @anthropic-ai/claude-code" in proc.stderr
    assert "Traceback" not in proc.stderr and "started a gateway" not in proc.stderr
    assert serve_processes(str(config)) == []
    missing = archc_claude(claude_home, "--claude-bin", str(tmp_path / "nope"), str(config), claude_dir=None)
    assert missing.returncode == 127 and "claude not found at" in missing.stderr


@pytest.mark.parametrize(("text", "expect"), [
    ("version: v0.1.0\nllm_providers:\n  - model: openai/gpt-4o\n    default: [oops\n", "L1"),
    ("version: v0.1.0\nlisteners: {}\nllm_providers:\n  - model: nosuchprovider/x\n", "R303"),
])
def test_broken_config_fails_cleanly(tmp_path: Path, claude_home: Path, claude_dir: str, text: str, expect: str) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(text, encoding="utf-8")
    proc = archc_claude(claude_home, str(config), "--", "-p", "hello", claude_dir=claude_dir)
    assert proc.returncode == 1
    assert "does not compile" in proc.stderr and f"{config}:" in proc.stderr and expect in proc.stderr
    assert "Traceback" not in proc.stderr and serve_processes(str(config)) == []


def test_usage_errors(claude_home: Path, claude_dir: str) -> None:
    nothing = archc_claude(claude_home, "--", "-p", "hello", claude_dir=claude_dir)
    assert nothing.returncode == 2 and "no config given" in nothing.stderr
    stray = archc_claude(claude_home, "a.yaml", "-p", "hello", claude_dir=claude_dir)
    assert stray.returncode == 2 and "after `--`" in stray.stderr
    absent = archc_claude(claude_home, "absent.yaml", claude_dir=claude_dir)
    assert absent.returncode == 1 and "absent.yaml: no such file" in absent.stderr
    dead = archc_claude(claude_home, "--url", f"http://127.0.0.1:{free_port()}", claude_dir=claude_dir)
    assert dead.returncode == 1 and "no gateway answers" in dead.stderr


# -- pieces, in process --------------------------------------------------------------------------------------


def _args(*rest: str, **options: object) -> argparse.Namespace:
    defaults = {"url": None, "port": None, "model_dir": None, "echo": None, "claude_bin": None, "startup_timeout": 60.0}
    return argparse.Namespace(rest=list(rest), **{**defaults, **options})


def test_arguments_split_at_the_double_dash() -> None:
    options, tail = launcher._parse_rest(_args("cfg.yaml", "--port", "5", "--", "-p", "x", "--allowedTools", "Bash"))
    assert (options.config, options.port, tail) == ("cfg.yaml", 5, ["-p", "x", "--allowedTools", "Bash"])
    options, tail = launcher._parse_rest(_args("--", "-p", "x", url="http://gw"))
    assert (options.config, options.url, tail) == (None, "http://gw", ["-p", "x"])
    options, tail = launcher._parse_rest(_args("cfg.yaml", "--", "--", "x"))
    assert tail == ["--", "x"]


def test_claude_environment_and_status_line_settings() -> None:
    from archc.compiler import bundle_from_path

    bundle = bundle_from_path(Path(__file__).resolve().parents[2] / "examples" / "claude_code.yaml")
    gateway = launch.Gateway(url="http://127.0.0.1:12000", bundle=bundle)
    env = launcher.claude_env(gateway, {"ANTHROPIC_API_KEY": "sk-real", "ANTHROPIC_AUTH_TOKEN": "mine", "PATH": "/bin"})
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:12000" and env["ANTHROPIC_AUTH_TOKEN"] == "archc-local"
    assert env["ANTHROPIC_SMALL_FAST_MODEL"] == env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "arch.claude.code.small.fast"
    assert "ANTHROPIC_API_KEY" not in env and env["PATH"] == "/bin"
    keyed = launcher.claude_env(gateway, {"ARCHC_GATEWAY_KEY": "gw-secret"})
    assert keyed["ANTHROPIC_AUTH_TOKEN"] == "gw-secret"
    by_url = launcher.claude_env(launch.Gateway(url="http://gw", models=["openai/gpt-4o"]), {})
    assert "ANTHROPIC_SMALL_FAST_MODEL" not in by_url

    cmd = launcher.claude_command("/bin/claude", "http://gw", ["-p", "hi"])
    assert cmd[0] == "/bin/claude" and cmd[1] == "--settings" and cmd[3:] == ["-p", "hi"]
    status_line = json.loads(cmd[2])["statusLine"]
    assert status_line["type"] == "command" and status_line["command"].endswith("-m archc.statusline --url http://gw")
    # The user's own --settings wins: we add nothing.
    assert launcher.claude_command("/bin/claude", "http://gw", ["--settings", "{}"]) == ["/bin/claude", "--settings", "{}"]


def test_format_status() -> None:
    hit = {"route": "code_generation", "provider": "openai", "model": "gpt-5", "router_ms": 0.04, "cache_hit": True}
    assert statusline.format_status(hit) == "code_generation → openai/gpt-5 (0.0 ms, cache hit)"
    miss = {**hit, "router_ms": 507.4, "cache_hit": False}
    assert statusline.format_status(miss) == "code_generation → openai/gpt-5 (507 ms, cache miss)"
    fallback = {"route": None, "fallback": "other", "provider": "anthropic", "model": "claude-sonnet-4-5", "router_ms": 3.0, "cache_hit": False}
    assert statusline.format_status(fallback) == "fallback:other → anthropic/claude-sonnet-4-5 (3.0 ms, cache miss)"
    # A model id that already carries its provider prefix is not doubled.
    assert statusline.format_status({**hit, "model": "openai/gpt-5"}).startswith("code_generation → openai/gpt-5 (")
    assert statusline.format_status({"router_ms": "junk"}) == "fallback:none → ? (0.0 ms, cache miss)"


@pytest.mark.parametrize("entry", [["archc", "statusline"], ["archc.statusline"]], ids=["archc-statusline", "module"])
def test_statusline_without_a_gateway_or_session_still_prints_a_line(entry: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for stdin, expect in ((json.dumps({"session_id": "abc"}), f"archc: gateway unreachable at {url}"),
                          ("not json", "archc: no session yet"), ("{}", "archc: no session yet")):
        proc = subprocess.run([sys.executable, "-m", *entry, "--url", url], input=stdin,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout.strip() == expect, proc.stderr


def test_statusline_before_the_first_decision(tmp_path: Path, fake_upstream: FakeUpstream,
                                              start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(write_config(tmp_path, fake_upstream.url))
    assert statusline.statusline_text(gw.url, "0b7e3f9a-0000-4000-8000-000000000000") == "archc: no routing decision yet"


# -- the status line, as a user sees it: interactive Claude Code in a terminal -------------------------------


class Terminal:
    """Claude Code's terminal: a pty whose output feeds a pyte screen (what a user would see)."""

    def __init__(self, columns: int = 160, lines: int = 40) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, needle: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
        """Read the screen until ``needle`` shows, ``proc`` exits (then drain what it wrote) or time runs out."""
        deadline = time.monotonic() + timeout
        while needle not in self.text() and time.monotonic() < deadline:
            exited = proc.poll() is not None
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.stream.feed(os.read(self.master, 65536))
                except OSError:
                    break
            elif exited:
                break
        return needle in self.text()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def test_status_line_shows_the_route_in_interactive_claude(tmp_path: Path, claude_home: Path, claude_dir: str,
                                                           fake_upstream: FakeUpstream, branching_router_model: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, fake_upstream.url, port=port)
    project = claude_home / "project"
    project.mkdir()
    # A first run would ask about the theme and folder trust; a user who has run claude before is not asked.
    (claude_home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "theme": "dark", "projects": {
        str(project): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}}}), encoding="utf-8")
    env = {**launcher_env(claude_home, claude_dir), "TERM": "xterm-256color"}
    term = Terminal()
    proc = subprocess.Popen([sys.executable, "-m", "archc", "claude", str(config), "--model-dir", str(branching_router_model)],
                            stdin=term.slave, stdout=term.slave, stderr=term.slave, env=env, cwd=project,
                            start_new_session=True)
    try:
        # Claude Code runs our status line command at start: the session has no decision yet.
        assert term.wait_for("archc: no routing decision yet", 60, proc), term.text()
        term.type(GENERATE_INTENT)
        time.sleep(0.5)
        term.type("\r")
        assert term.wait_for("code_generation → openai/gpt-gen (", 60, proc), term.text()
        assert [r.body["model"] for r in main_requests(fake_upstream)] == ["gpt-gen"]
        # Side requests (title generation) name the small/fast alias: they skip the router.
        side = [r for r in fake_upstream.requests if r.method == "POST" and r not in main_requests(fake_upstream)]
        assert {r.body["model"] for r in side} <= {"gpt-small"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        runs = [line for line in metrics.splitlines() if line.startswith("archc_router_decisions_total{")]
        assert len(runs) == 1 and 'cache="miss"' in runs[0] and runs[0].endswith(" 1.0"), runs
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the launcher passes it to claude, then stops its gateway
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        term.close()
    assert serve_processes(str(config)) == [] and port_is_closed(port)


def test_readme_shows_the_example_config_verbatim(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- section:claude -->"):readme.index("<!-- /section:claude -->")]
    shown = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert shown == (repo_root / "examples" / "claude_code.yaml").read_text(encoding="utf-8")
