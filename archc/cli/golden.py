"""archc CLI: `archc test`, golden routing cases replayed through the runtime's router and resolution.

Top of the stack: imports archc.review.golden, archc.review.junit, the compiler entry point, and (lazily, through archc.cli.replay) the runtime's decision path.
Prints the report and sets the exit code (0 all cases match, 1 mismatch or error, 2 usage).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from archc.review import golden
from archc.review import golden_update
from archc.review import junit
from archc.bundle import Bundle
from archc.compiler import bundle_from_path
from archc.diagnostics import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, CompileError, Diagnostic, Severity, Span, format_github, format_json, format_text
from archc.review.golden import GoldenSet, Result
from archc.cli.replay import open_replay
from archc.output import json_text

FORMATS = ("text", "json", "github")
DEFAULT_GOLDEN = Path("golden")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "test",
        help="run golden routing cases against a config or bundle",
        description="Replay golden conversations through the same resolution and router code the "
        "runtime uses; print case, expected, got and router ms; exit 1 on any mismatch.",
    )
    p.add_argument("config", metavar="CONFIG_OR_BUNDLE", help="archgw-style YAML config or a compiled bundle (JSON)")
    p.add_argument("golden", metavar="GOLDEN", nargs="*", help="golden files or folders (default: ./golden)")
    p.add_argument("--model-dir", type=Path, metavar="DIR", help="router model folder (default: the installed model for the bundle's router)")
    p.add_argument("--update", action="store_true", help="rewrite mismatched expectations in place (comments kept)")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write a JUnit XML report to FILE")
    p.add_argument("--format", choices=FORMATS, default="text", help="report format (default text)")
    p.add_argument("--case", action="append", default=[], metavar="ID", help="run only this case id (repeatable)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The outermost handler of `archc test`: no traceback reaches the user, whatever the input."""
    try:
        return _run(args)
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:  # the CLI edge: say what failed, in one line
        sys.stderr.write(f"archc test: internal error: {type(exc).__name__}: {exc}\n")
        return EXIT_ERRORS


def _run(args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    try:
        bundle = bundle_from_path(args.config)
    except CompileError as exc:
        _print_diagnostics(exc.diagnostics, args.format, out, err, fatal=True)
        return EXIT_ERRORS
    paths = list(args.golden) or [DEFAULT_GOLDEN]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        err.write(f"archc test: no such golden file or folder: {', '.join(map(str, missing))}\n")
        return EXIT_USAGE
    gset = golden.load_golden(paths)
    cases = [c for c in gset.cases if not args.case or c.id in args.case]
    diagnostics = list(gset.diagnostics) + golden.check_names(
        cases, [r.name for r in bundle.routes], [p.name for p in bundle.providers])
    if diagnostics:
        _print_diagnostics(diagnostics, args.format, out, err, fatal=not gset.ok)
    if not gset.ok:
        _write_junit(args.junit, gset, [])
        return EXIT_ERRORS
    if not cases:
        err.write("archc test: no golden cases found" + (f" with id {', '.join(args.case)}" if args.case else "") + "\n")
        return EXIT_ERRORS
    replayer = open_replay(bundle, args.model_dir)
    missing_model = replayer.missing
    if missing_model and any(golden.needs_router(c) for c in cases):
        message = f"{missing_model}; cases expect routing decisions, so they cannot run without it"
        diag = Diagnostic("G504", Severity.ERROR, message, Span(str(cases[0].file)))
        if args.format == "json":
            out.write(format_json([diag]))
        err.write(f"archc test: {message}\n")
        _write_junit(args.junit, dataclasses.replace(gset, diagnostics=gset.diagnostics + (diag,)), [])
        return EXIT_ERRORS
    results = asyncio.run(golden.replay(replayer, cases))
    _print_report(bundle, results, args.format, out, note=missing_model, model_dir=replayer.where, diagnostics=diagnostics)
    junit_ok = _write_junit(args.junit, gset, results)
    failed = [r for r in results if not r.ok]
    if args.update and failed:
        return _update(failed, err) if junit_ok else EXIT_ERRORS
    return EXIT_ERRORS if failed or not junit_ok else EXIT_OK


def _update(failed: Sequence[Result], err: Any) -> int:
    """--update: accept the observed decisions; a refused request (e.g. an invalid conversation)
    has no decision to accept, so it stays a failure."""
    refused = [r for r in failed if r.got.error is not None]
    accepted = [r for r in failed if r.got.error is None]
    try:
        changed = golden_update.update_files(accepted)
    except (golden_update.GoldenUpdateError, OSError) as exc:
        err.write(f"archc test: --update failed: {exc}\n")
        return EXIT_ERRORS
    err.write(f"archc test: updated {len(accepted)} case(s) in {len(changed)} file(s)"
              f"{': ' + ', '.join(map(str, changed)) if changed else ''}\n")
    for r in refused:
        err.write(f"archc test: {r.case.file}:{r.case.line}: case {r.case.id!r} not updated: "
                  f"the gateway would refuse it ({r.got.error})\n")
    return EXIT_ERRORS if refused else EXIT_OK


# -- reports ----------------------------------------------------------------------------------

def _print_diagnostics(diags: Sequence[Diagnostic], fmt: str, out: Any, err: Any, *, fatal: bool) -> None:
    """Fatal diagnostics in JSON are the whole stdout document; others join the report's JSON."""
    if fmt == "json":
        if fatal:
            out.write(format_json(diags))
    elif fmt == "github":
        out.write(format_github(diags))
        err.write(format_text(diags))
    else:
        err.write(format_text(diags, color=err.isatty()))


def _print_report(bundle: Bundle, results: Sequence[Result], fmt: str, out: Any, *, note: str | None,
                  model_dir: Path | None, diagnostics: Sequence[Diagnostic]) -> None:
    if fmt == "json":
        doc = report_json(bundle, results, note=note, model_dir=model_dir)
        doc["diagnostics"] = [d.to_dict() for d in diagnostics]
        out.write(json_text(doc, indent=2) + "\n")
        return
    if fmt == "github":
        out.write(report_github(results))
    out.write(report_text(bundle, results, note=note, model_dir=model_dir))


def report_text(bundle: Bundle, results: Sequence[Result], *, note: str | None = None,
                model_dir: Path | None = None) -> str:
    """The table: status, case, expected, got, router ms; grouped by golden file."""
    router = bundle.router.model if bundle.router and bundle.routes else "(no routes)"
    lines = [f"archc test: bundle {bundle.digest[:19]}, router {router}" + (f" from {model_dir}" if model_dir else "")]
    if note:
        lines.append(f"note: {note}")
    header = ("", "case", "expected", "got", "router ms")
    by_file: dict[Path, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.case.file, []).append(r)
    for path, file_results in by_file.items():
        rows = [header] + [
            ("ok" if r.ok else "FAIL", r.case.id, golden.describe_expect(r.case.expect),
             golden.describe_outcome(r.got), f"{r.got.router_ms:.1f}") for r in file_results]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines.append(f"{path}")
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4].rjust(9)]
            lines.append("  " + "  ".join(cells).rstrip())
    failed = sum(1 for r in results if not r.ok)
    lines.append(f"{len(results)} cases: {len(results) - failed} ok, {failed} mismatch{'es' if failed != 1 else ''}")
    return "\n".join(lines) + "\n"


def report_json(bundle: Bundle, results: Sequence[Result], *, note: str | None = None,
                model_dir: Path | None = None) -> dict[str, Any]:
    failed = sum(1 for r in results if not r.ok)
    return {
        "ok": failed == 0,
        "bundle": bundle.digest,
        "router_model": bundle.router.model if bundle.router else None,
        "router_model_dir": str(model_dir) if model_dir else None,
        "note": note,
        "total": len(results),
        "failed": failed,
        "cases": [
            {
                "file": str(r.case.file),
                "line": r.case.line,
                "id": r.case.id,
                "ok": r.ok,
                "mismatched": list(r.mismatched),
                "expected": dict(r.case.expect.items()),
                "got": {**r.got.as_expect(), "error": r.got.error},
                "router_ms": round(r.got.router_ms, 3),
                "confidence": r.got.confidence,
            }
            for r in results
        ],
    }


def report_github(results: Sequence[Result]) -> str:
    """GitHub Actions annotations, one per mismatch, at the case's line in the golden file."""
    diags = [
        Diagnostic("G510", Severity.ERROR,
                   f"golden case {r.case.id!r}: expected {golden.describe_expect(r.case.expect)}, "
                   f"got {golden.describe_outcome(r.got)}", r.case.span)
        for r in results if not r.ok
    ]
    return format_github(diags)


def _write_junit(path: Path | None, gset: GoldenSet, results: Sequence[Result]) -> bool:
    if path is None:
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(junit.to_xml(golden.junit_suites(gset, results)))
    except OSError as exc:
        sys.stderr.write(f"archc test: cannot write JUnit report {path}: {exc.strerror or exc}\n")
        return False
    return True
