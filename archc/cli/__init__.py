"""The archc command line: the only place that prints or sets exit codes.

Exit codes: 0 clean, 1 errors (or test mismatches), 2 usage, 3 diff found changes, 4 breaking changes.
Each submodule registers its subcommands; this module only parses and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from archc import __version__
from archc.cli import claude as _claude
from archc.cli import compile as _compile
from archc.cli import golden as _golden
from archc.cli import models as _models
from archc.cli import serve as _serve
from archc.output import safe_streams

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2

_MODULES = (_compile, _serve, _models, _golden, _claude)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archc", description="Compile, test and serve LLM routing configs.")
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    safe_streams()  # a report quoting unencodable input (a lone surrogate, LANG=C) is escaped, not a crash
    parser = build_parser()
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
