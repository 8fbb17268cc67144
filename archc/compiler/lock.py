"""Alias pinning: ``archc.lock`` beside the config records what each versioned alias resolved to.

Stage: resolve helper. Imports archc.compiler.load (YAML + positions), archc.diagnostics, archc.bundle.
A pinned version never changes target: the build fails (R308) unless ``--repin NAME``;
``--locked`` fails (R309) when the lock would change at all. Entries are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from archc.bundle import Alias
from archc.diagnostics import Diagnostic, Severity, Span
from archc.compiler.load import load_yaml, span
from archc.output import json_text

LOCK_NAME = "archc.lock"
LOCK_VERSION = 1
LOCK_MODES = ("write", "locked", "ignore", "read")
HEADER = (
    "# archc.lock: pinned model aliases, written by `archc build`. Commit this file.\n"
    "# A pinned version (name.vN) never changes target: publish name.v(N+1) instead,\n"
    "# or rebuild with `archc build --repin NAME` to move it on purpose.\n"
)


@dataclass
class LockOutcome:
    """The lock after this build (``entries``), whether it differs from the file, and diagnostics."""

    entries: dict[str, str] = field(default_factory=dict)
    changed: bool = False
    diagnostics: list[Diagnostic] = field(default_factory=list)


def lock_path_for(config_path: str | Path) -> Path:
    return Path(config_path).resolve().parent / LOCK_NAME


def read_lock(path: Path) -> tuple[dict[str, str] | None, list[Diagnostic]]:
    """(entries, diagnostics); entries is None when the file does not exist or is malformed."""
    if not path.exists():
        return None, []
    tree, diags = load_yaml(path, file=str(path))
    if tree is None:
        return None, [_as_lock_error(d) for d in diags]
    problems: list[Diagnostic] = []

    def bad(message: str, where: tuple) -> None:
        problems.append(Diagnostic("R314", Severity.ERROR, f"lock file: {message}", span(tree, str(path), where),
                                   ".".join(str(p) for p in where), "regenerate it with `archc build` (without --locked)"))

    if tree.get("version") != LOCK_VERSION:
        bad(f"version must be {LOCK_VERSION}", ("version",))
    aliases = tree.get("aliases", {})
    if aliases is None:
        aliases = {}
    if not isinstance(aliases, dict):
        bad("aliases must be a mapping of alias name -> provider name", ("aliases",))
        aliases = {}
    entries: dict[str, str] = {}
    for name, target in aliases.items():
        if not isinstance(name, str) or not isinstance(target, str):
            bad(f"entry {name!r} must map a name to a provider name", ("aliases", name))
            continue
        entries[name] = target
    for key in tree:
        if key not in ("version", "aliases"):
            bad(f"unknown key {key!r}", (key,))
    return (None if problems else entries), problems


def render_lock(entries: Mapping[str, str]) -> str:
    """Deterministic lock text: header, version, aliases sorted by name (JSON-quoted YAML strings)."""
    lines = [HEADER, f"version: {LOCK_VERSION}\n"]
    if entries:
        lines.append("aliases:\n")
        lines.extend(f"  {json_text(k)}: {json_text(entries[k])}\n"
                     for k in sorted(entries))
    else:
        lines.append("aliases: {}\n")
    return "".join(lines)


def write_lock(path: Path, entries: Mapping[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_lock(entries), encoding="utf-8")
    tmp.replace(path)


def apply_lock(aliases: Iterable[Alias], previous: Mapping[str, str] | None, *, mode: str,
               repin: Sequence[str] = (), where: Callable[[str], Span], lock_name: str = LOCK_NAME) -> LockOutcome:
    """Compare this build's pinned aliases with the lock; ``where(alias)`` locates an alias in the config."""
    out = LockOutcome()
    if mode == "ignore":
        return out
    old = dict(previous or {})
    new = dict(old)
    pinned = {a.name: a.target for a in aliases if a.pinned}

    def add(code: str, name: str, message: str, hint: str) -> None:
        out.diagnostics.append(Diagnostic(code, Severity.ERROR, message, where(name), f"model_aliases.{name}", hint))

    for name in repin:
        if name not in pinned:
            add("R305", name, f"--repin {name}: no versioned alias of that name in the config",
                "aliases that can be repinned: " + (", ".join(sorted(pinned)) or "none"))
    for name, target in pinned.items():
        if name not in old:
            new[name] = target
        elif old[name] != target:
            if name in repin:
                new[name] = target
            else:
                nxt = _next_version(name)
                add("R308", name, f"alias {name} is pinned to {old[name]!r} in {lock_name}; this build resolves it "
                                  f"to {target!r}", f"publish {nxt} with the new target, or rebuild with --repin {name}")
    out.entries = new
    out.changed = new != old or (previous is None and bool(new))
    if mode == "locked" and out.changed:
        if previous is None:
            first = next(iter(sorted(pinned)))
            add("R309", first, f"--locked: {lock_name} is missing but the config pins {len(pinned)} alias version(s)",
                "run `archc build` without --locked and commit archc.lock")
        else:
            for name in sorted(set(new) | set(old)):
                if old.get(name) != new.get(name):
                    add("R309", name, f"--locked: {lock_name} would change for {name} "
                                      f"({old.get(name) or 'absent'} -> {new.get(name)})",
                        "run `archc build` without --locked and commit archc.lock")
    return out


def _next_version(name: str) -> str:
    head, _, version = name.rpartition(".v")
    try:
        return f"{head}.v{int(version) + 1}"
    except ValueError:
        return f"{name}.v2"


def _as_lock_error(d: Diagnostic) -> Diagnostic:
    return Diagnostic("R314", d.severity, f"lock file: {d.message}", d.span, d.path, "regenerate it with `archc build`")

