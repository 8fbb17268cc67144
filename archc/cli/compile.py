"""archc CLI, compiler commands: check, build, diff, explain. Prints and sets exit codes.

Exit codes: 0 clean, 1 errors, 2 usage; diff: 0 no change, 3 changes, 4 breaking changes;
explain: 0 resolves, 1 does not resolve (or the input does not compile).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from archc.review import diff as _diff
from archc.review import explain as _explain
from archc.review import impact as _impact
from archc.compiler import CompileError, bundle_from_path, compile_path, is_bundle_bytes
from archc.diagnostics import EXIT_CHANGED, EXIT_ERRORS, EXIT_OK, Diagnostic, format_github, format_json, format_text
from archc.output import json_text

FORMATS = ("text", "json", "github")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("check", help="validate a config (no output file)",
                       description="Load, validate and resolve CONFIG; report every problem. Reads archc.lock, never writes it.")
    p.add_argument("config", metavar="CONFIG")
    _output_flags(p)
    p.set_defaults(handler=_guard(_cmd_check))

    p = sub.add_parser("build", help="compile a config into a bundle",
                       description="Compile CONFIG into a bundle (canonical JSON). Pins versioned aliases in archc.lock beside CONFIG.")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("-o", "--output", metavar="BUNDLE", help="bundle path ('-' for stdout; default: CONFIG stem + .bundle.json)")
    lock = p.add_mutually_exclusive_group()
    lock.add_argument("--locked", action="store_true", help="fail if archc.lock would change (for CI)")
    lock.add_argument("--no-lock", action="store_true", help="neither read nor write archc.lock")
    p.add_argument("--repin", action="append", default=[], metavar="ALIAS",
                   help="allow this pinned alias version to change target (repeatable)")
    _output_flags(p)
    p.set_defaults(handler=_guard(_cmd_build))

    p = sub.add_parser("diff", help="semantic diff of two configs or bundles",
                       description="Routes, aliases, providers and defaults that differ. Exit 0 none, 3 changes, 4 breaking.")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--format", choices=[f.value for f in _diff.DiffFormat], default="text")
    p.add_argument("--impact", nargs="+", metavar="GOLDEN", help="also replay golden cases through both bundles")
    p.add_argument("--model-dir", metavar="DIR", help="router model directory for --impact")
    p.set_defaults(handler=_guard(_cmd_diff))

    p = sub.add_parser("explain", help="how a model name resolves (offline)",
                       description="Alias chain -> literal -> provider -> URL and wire format, for one requested model.")
    p.add_argument("source", metavar="CONFIG_OR_BUNDLE")
    p.add_argument("--model", required=True, metavar="NAME")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_guard(_cmd_explain))


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="text", help="diagnostics format")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The outermost handler: no traceback reaches the user, whatever the input."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence, reported plainly
            print(f"archc: internal error ({type(exc).__name__}); please report it with the input that caused it",
                  file=sys.stderr)
            return EXIT_ERRORS

    return run


def _use_color(choice: str, stream: Any) -> bool:
    if choice != "auto":
        return choice == "always"
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def _report(diags: list[Diagnostic], fmt: str, color: str, stream: Any) -> None:
    if fmt == "json":
        stream.write(format_json(diags))
    elif fmt == "github":
        stream.write(format_github(diags))
    elif diags:
        stream.write(format_text(diags, color=_use_color(color, stream)))


def _cmd_check(args: argparse.Namespace) -> int:
    if _is_bundle_file(args.config):  # a built bundle: verify its structure and digest instead
        try:
            bundle = bundle_from_path(args.config)
        except CompileError as exc:
            _report(exc.diagnostics, args.format, args.color, sys.stdout)
            return EXIT_ERRORS
        if args.format == "text":
            print(f"{args.config}: bundle ok ({bundle.digest}, {len(bundle.providers)} providers, "
                  f"{len(bundle.aliases)} aliases, {len(bundle.routes)} routes)")
        else:
            _report([], args.format, args.color, sys.stdout)
        return EXIT_OK
    result = compile_path(args.config, lock_mode="read")
    _report(result.diagnostics, args.format, args.color, sys.stdout)
    if result.ok and args.format == "text":
        assert result.bundle is not None
        b = result.bundle
        print(f"{args.config}: ok ({len(b.providers)} providers, {len(b.aliases)} aliases, {len(b.routes)} routes)")
    return EXIT_OK if result.ok else EXIT_ERRORS


def _is_bundle_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1)
            if head.strip() != b"{" or os.path.getsize(path) > 64 * 1024 * 1024:
                return False
            return is_bundle_bytes(head + f.read())
    except OSError:
        return False


def _cmd_build(args: argparse.Namespace) -> int:
    mode = "locked" if args.locked else "ignore" if args.no_lock else "write"
    result = compile_path(args.config, lock_mode=mode, repin=tuple(args.repin))
    to_stdout = args.output == "-"
    out_stream = sys.stderr if to_stdout else sys.stdout
    _report(result.diagnostics, args.format, args.color, out_stream)
    if not result.ok or result.bundle is None:
        return EXIT_ERRORS
    data = result.bundle.to_bytes()
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        target = Path(args.output) if args.output else Path(args.config).with_suffix(".bundle.json")
        try:
            if target.exists() and not target.is_file():
                target.write_bytes(data)  # a device or FIFO (-o /dev/null): never rename a file over it
            else:
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
        except OSError as exc:
            print(f"archc: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERRORS
        if args.format == "text":
            print(f"wrote {target} ({result.bundle.digest})")
    if result.lock_written and args.format == "text":
        print(f"updated {result.lock_path}", file=out_stream)
    return EXIT_OK


def _load(path: str, lock_mode: str = "read") -> Any:
    try:
        return bundle_from_path(path, lock_mode=lock_mode)
    except CompileError as exc:
        sys.stderr.write(format_text(exc.diagnostics, color=_use_color("auto", sys.stderr)))
        return None


def _cmd_diff(args: argparse.Namespace) -> int:
    # The lock is ignored here: a retargeted pinned alias is what diff must show (exit 4), not hide.
    old, new = _load(args.old, "ignore"), _load(args.new, "ignore")
    if old is None or new is None:
        return EXIT_ERRORS
    changes = _diff.diff_bundles(old, new)
    fmt = _diff.DiffFormat(args.format)
    rendered = _diff.render(changes, fmt, old_name=args.old, new_name=args.new)
    code = _diff.exit_code(changes)
    if args.impact:
        from archc.cli.replay import open_replay  # the runtime loads only when --impact replays

        model_dir = Path(args.model_dir) if args.model_dir else None
        try:
            text, changed = _impact.impact_report(old, new, args.impact, open_replay=open_replay,
                                                  model_dir=model_dir, fmt=args.format)
        except CompileError as exc:  # malformed golden files, or no router model to replay with
            sys.stdout.write(rendered)
            sys.stderr.write(format_text(exc.diagnostics, color=_use_color("auto", sys.stderr)))
            return EXIT_ERRORS
        if changed and code == EXIT_OK:
            code = EXIT_CHANGED
        if fmt is _diff.DiffFormat.JSON:  # one JSON document: the diff with an "impact" key
            doc = {**json.loads(rendered), "impact": json.loads(text), "exit_code": code}
            rendered, text = json_text(doc, indent=2) + "\n", ""
        rendered += text if not text or text.endswith("\n") else text + "\n"
    sys.stdout.write(rendered)
    return code


def _cmd_explain(args: argparse.Namespace) -> int:
    bundle = _load(args.source)
    if bundle is None:
        return EXIT_ERRORS
    from runtime.upstream.egress import describe  # stdlib only; imported when explain runs, so `check` stays light

    section = (bundle.extensions.get("gateway") or {}).get("egress")
    exp = _explain.explain(bundle, args.model, egress=lambda p: describe(p.endpoint, section, p.options, os.environ))
    sys.stdout.write(_explain.format_json(exp) if args.format == "json" else _explain.format_text(exp))
    return EXIT_OK if exp.found else EXIT_ERRORS
