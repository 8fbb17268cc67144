"""archc CLI: `archc claude` (Claude Code through the gateway, status line included) and `archc statusline`.

Top of the stack: finding or starting the gateway is archc/cli/launch.py's (shared with `archc
codex`); this module holds what is Claude Code's: its environment, its status line, its process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Sequence

from archc import statusline
from archc.cli.launch import (Gateway, add_gateway_options, find_tool, gateway_token, parse_rest, prepare_gateway,
                              run_foreground, run_launcher, say_how_it_routes)
from archc.diagnostics import EXIT_OK

SMALL_FAST_ALIAS = "arch.claude.code.small.fast"  # archgw's convention for Claude Code's small model
PROG = "archc claude"
USAGE = "archc claude CONFIG [-- CLAUDE_ARGS...]"
# Variables Claude Code reads that would point it somewhere other than the gateway.
_CLEARED_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")


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
    add_gateway_options(p, "claude")


# -- archc claude --------------------------------------------------------------------------------


def run_claude(args: argparse.Namespace) -> int:
    def body(started: list[Gateway]) -> int:
        options, claude_args = _parse_rest(args)
        claude_bin = find_claude(options.claude_bin)
        started.append(prepare_gateway(options, PROG, USAGE))  # it stops what it started if it fails
        say_how_it_routes(started[0], PROG)
        return run_foreground(claude_command(claude_bin, started[0].url, claude_args), claude_env(started[0]))

    return run_launcher(PROG, body)


def _parse_rest(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """Split ``rest`` at the first ``--``: the head holds CONFIG and options, the tail is claude's."""
    return parse_rest(args, PROG, _add_claude_options, "Claude Code")


def find_claude(explicit: str | None = None) -> str:
    """The claude executable: --claude-bin, PATH, then ./.tools/node_modules/.bin (where `make test` installs it)."""
    return find_tool("claude", "Claude Code", explicit, "npm install -g @anthropic-ai/claude-code")


def claude_env(gateway: Gateway, base: dict[str, str] | None = None) -> dict[str, str]:
    """Claude Code's environment: the gateway's URL and token, the small/fast alias when defined."""
    env = dict(os.environ if base is None else base)
    for name in _CLEARED_ENV:
        env.pop(name, None)
    env["ANTHROPIC_BASE_URL"] = gateway.url
    env["ANTHROPIC_AUTH_TOKEN"] = gateway_token(gateway.bundle, env)
    if _defines_small_fast(gateway):
        env["ANTHROPIC_SMALL_FAST_MODEL"] = SMALL_FAST_ALIAS
        env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = SMALL_FAST_ALIAS
    return env


def _defines_small_fast(gateway: Gateway) -> bool:
    if gateway.bundle is not None:
        return gateway.bundle.alias(SMALL_FAST_ALIAS) is not None
    return SMALL_FAST_ALIAS in gateway.models


def claude_command(claude_bin: str, gateway_url: str, claude_args: Sequence[str]) -> list[str]:
    """claude with our status line, unless the user passes their own --settings."""
    if any(a == "--settings" or a.startswith("--settings=") for a in claude_args):
        return [claude_bin, *claude_args]
    # `python -m archc.statusline` skips the full CLI's imports: Claude Code runs it after every message.
    status_cmd = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "archc.statusline", "--url", gateway_url))
    settings = {"statusLine": {"type": "command", "command": status_cmd, "padding": 0}}
    return [claude_bin, "--settings", json.dumps(settings), *claude_args]


# -- archc statusline (the work is in archc/statusline.py, which Claude Code runs directly) ---------------


def run_statusline(args: argparse.Namespace) -> int:
    """Print one line; always exit 0 (a failing status line command blanks Claude Code's line)."""
    try:
        raw = sys.stdin.read()
    except (OSError, UnicodeDecodeError):
        raw = ""
    print(statusline.text_for_input(raw, args.url, args.timeout))
    return EXIT_OK


