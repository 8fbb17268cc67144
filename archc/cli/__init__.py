"""The archc command line: the only place that prints or sets exit codes.

Exit codes: 0 clean, 1 errors (or test mismatches), 2 usage, 3 diff found changes, 4 breaking changes.
Each submodule registers its subcommands; this module only parses and dispatches. A command loads
only its own module (``COMMANDS``): `archc check` pays for the compiler, never for the runtime.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Sequence

from archc import __version__
from archc.diagnostics import EXIT_OK, EXIT_USAGE
from archc.output import safe_streams


# command -> the archc.cli module that registers and runs it (in `archc --help` order).
COMMANDS = {
    "check": "compile", "build": "compile", "diff": "compile", "explain": "compile",
    "serve": "serve", "route": "models", "model": "models", "test": "golden",
    "claude": "claude", "statusline": "claude", "codex": "codex",
}


def _modules(argv: Sequence[str]) -> list[ModuleType]:
    """The modules to load: the named command's alone, else all of them (help, typos)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"archc.cli.{name}") for name in names]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``'s command (every command's when None)."""
    parser = argparse.ArgumentParser(prog="archc", description="Compile, test and serve LLM routing configs.")
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules(argv or ()):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    safe_streams()  # a report quoting unencodable input (a lone surrogate, LANG=C) is escaped, not a crash
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
