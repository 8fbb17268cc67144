"""The compiler's API edge: load -> validate -> resolve -> (lock) -> emit, all diagnostics collected.

Imports every compiler stage; imported by archc/cli/* only. ``compile_path`` never raises for bad
input; ``bundle_from_path`` (used by serve/route/test/diff/claude) raises ``CompileError`` once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from archc.bundle import Bundle, BundleError
from archc.diagnostics import CompileError, Diagnostic, Severity, Span
from archc.compiler.emit import emit
from archc.compiler.load import load_document, read_source, span, to_plain
from archc.compiler.lock import LOCK_MODES, apply_lock, lock_path_for, read_lock, write_lock
from archc.compiler.resolve import resolve
from archc.compiler.validate import Schemas, load_schemas, validate

__all__ = ["CompileError", "CompileResult", "bundle_from_path", "compile_path", "compile_source", "is_bundle_bytes"]


@dataclass
class CompileResult:
    """``bundle`` is None when there are errors; ``lock_written`` says whether archc.lock was updated."""

    bundle: Bundle | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    lock_path: Path | None = None
    lock_written: bool = False

    @property
    def ok(self) -> bool:
        return self.bundle is not None and not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def compile_path(path: str | os.PathLike[str], *, lock_mode: str = "write", repin: Sequence[str] = (),
                 schemas: Schemas | None = None) -> CompileResult:
    """Compile a config file. ``lock_mode``: write (build), locked (CI), read (serve/test/check), ignore."""
    if lock_mode not in LOCK_MODES:
        raise ValueError(f"lock_mode must be one of {LOCK_MODES}")
    name, raw, diags = read_source(Path(path), str(path))
    if raw is None:
        return CompileResult(None, diags)
    lock_path = None if lock_mode == "ignore" else lock_path_for(path)
    return compile_source(raw, file=name, lock_mode=lock_mode, repin=repin, lock_path=lock_path, schemas=schemas)


def compile_source(raw: bytes | str, *, file: str = "<config>", lock_mode: str = "ignore", repin: Sequence[str] = (),
                   lock_path: Path | None = None, schemas: Schemas | None = None) -> CompileResult:
    """Compile config text/bytes; the lock is used only when ``lock_path`` is given."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    loaded = load_document(data, file=file)
    diags = list(loaded.diagnostics)
    if loaded.tree is None:
        return CompileResult(None, diags, lock_path)
    tree, config = loaded.tree, to_plain(loaded.tree)
    checked, well_typed = validate(config, tree, file, schemas or load_schemas())
    diags += checked
    resolved, more = resolve(well_typed, tree, file)  # never meets a value the schema refused
    diags += more

    outcome = None
    if lock_path is not None and lock_mode != "ignore":
        previous, lock_diags = read_lock(lock_path)
        diags += lock_diags
        def where(alias: str) -> Span:
            return _alias_span(resolved.alias_paths.get(alias), tree, file)
        outcome = apply_lock(resolved.aliases, previous, mode=lock_mode, repin=repin, where=where,
                             lock_name=lock_path.name)
        diags += outcome.diagnostics
    if any(d.is_error for d in diags):
        return CompileResult(None, diags, lock_path)
    bundle, emit_diags = emit(resolved, config, file_name=Path(file).name, raw=data)
    diags += emit_diags
    written = False
    if bundle is not None and outcome is not None and lock_mode == "write" and outcome.changed:
        try:
            write_lock(lock_path, outcome.entries)
            written = True
        except OSError as exc:
            diags.append(Diagnostic("E402", Severity.ERROR, f"cannot write {lock_path}: {exc.strerror or exc}",
                                    Span(str(lock_path))))
            bundle = None
    return CompileResult(bundle, diags, lock_path, written)


def is_bundle_bytes(raw: bytes) -> bool:
    """A JSON object with ``format_version`` (what ``archc build`` writes)."""
    head = raw.lstrip()[:1]
    if head != b"{":
        return False
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data


def bundle_from_path(path: str | os.PathLike[str], *, lock_mode: str = "read") -> Bundle:
    """A config (compiled in memory, lock read-only) or a bundle JSON -> Bundle; else CompileError.

    ``lock_mode="ignore"`` skips archc.lock (``archc diff`` uses it, so a retargeted pinned alias
    shows up as a breaking change instead of failing the compile).
    """
    if lock_mode not in ("read", "ignore"):
        raise ValueError("bundle_from_path never writes the lock: lock_mode is read or ignore")
    name, raw, diags = read_source(Path(path), str(path))
    if raw is None:
        raise CompileError(diags)
    if is_bundle_bytes(raw):
        try:
            return Bundle.from_bytes(raw)
        except BundleError as exc:
            raise CompileError([Diagnostic("E403", Severity.ERROR, f"not a valid bundle: {exc}", Span(name))]) from exc
    lock_path = lock_path_for(path) if lock_mode == "read" else None
    result = compile_source(raw, file=name, lock_mode=lock_mode, lock_path=lock_path)
    if not result.ok or result.bundle is None:
        raise CompileError(result.diagnostics)
    return result.bundle


def _alias_span(path: tuple | None, tree: object, file: str) -> Span:
    return span(tree, file, path) if path else Span(file, 1, 1)
