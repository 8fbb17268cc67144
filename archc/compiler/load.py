"""Load stage: bytes -> ruamel round-trip tree (positions kept) + L1xx diagnostics; never raises.

Imports: ruamel.yaml and archc.diagnostics. Reusable by any YAML reader in archc (configs, the
lock file, golden cases): ``load_yaml`` guards size, encoding, syntax, duplicate keys, alias bombs
and nesting; ``position``/``span`` give the 1-based (line, col) of any JSON path in the tree.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode
from ruamel.yaml.parser import Parser
from ruamel.yaml.scanner import Scanner

from archc.diagnostics import Diagnostic, Severity, Span

MAX_BYTES = 2 * 1024 * 1024  # larger inputs are rejected before parsing (L102); the bench config is 145 KiB
# The YAML parser is pure Python (positions need ruamel's round-trip mode): about 30 us per item,
# so a crafted file of a million tiny items would take a minute. Real configs have a few thousand
# (the 200-provider/1,000-route bench config has about 4,600); past this, L102 before parsing.
MAX_ITEMS = 30_000
MAX_NODES = 200_000  # nodes after alias expansion (billion-laughs guard, L107)
MAX_DEPTH = 64  # nesting depth (L108); archgw configs nest about 6 deep

PathT = Sequence[str | int]


@dataclass(frozen=True)
class Loaded:
    """A loaded document: ``tree`` (ruamel round-trip, positions inside) or None on failure."""

    file: str
    tree: Any
    text: str
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return self.tree is not None and not any(d.is_error for d in self.diagnostics)


def read_source(source: str | os.PathLike[str] | bytes, file: str | None = None) -> tuple[str, bytes | None, list[Diagnostic]]:
    """Resolve ``source`` (a path, YAML text, or raw bytes) to (display name, bytes, diagnostics)."""
    if isinstance(source, bytes):
        return file or "<bytes>", source, []
    if isinstance(source, str) and ("\n" in source or not (os.path.exists(source) or _looks_like_path(source))):
        return file or "<string>", source.encode("utf-8", "surrogatepass"), []
    path = Path(source)
    name = file or str(source)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return name, None, [_diag("L102", f"file is {size} bytes; the limit is {MAX_BYTES} bytes", name,
                                      hint="split the config or remove generated content")]
        if path.is_dir():
            return name, None, [_diag("L101", "is a directory, not a file", name)]
        with path.open("rb") as f:  # bounded read: devices such as /dev/zero report size 0
            raw = f.read(MAX_BYTES + 1)
        return name, raw, []
    except OSError as exc:
        return name, None, [_diag("L101", f"cannot read: {exc.strerror or exc}", name)]


def load_yaml(source: str | os.PathLike[str] | bytes, *, file: str | None = None) -> tuple[Any, list[Diagnostic]]:
    """Parse one YAML document. Returns (tree, diagnostics); tree is None when loading failed."""
    loaded = load_document(source, file=file)
    return loaded.tree, list(loaded.diagnostics)


def load_document(source: str | os.PathLike[str] | bytes, *, file: str | None = None,
                  require_mapping: bool = True) -> Loaded:
    # require_mapping=False: golden files (archc/review/golden.py) are a top-level list.
    name, raw, diags = read_source(source, file)
    if raw is None:
        return Loaded(name, None, "", tuple(diags))
    if len(raw) > MAX_BYTES:
        return Loaded(name, None, "", (_diag("L102", f"input is larger than the limit of {MAX_BYTES} bytes", name,
                                                      hint="split the config or remove generated content"),))
    text, problem = _decode(raw, name)
    if problem is not None:
        return Loaded(name, None, "", (problem,))
    if not text.strip():
        return Loaded(name, None, text, (_diag("L104", "file is empty", name, 1, 1, hint="start from an example in examples/"),))
    items = _estimate_items(text)
    if items > MAX_ITEMS:
        return Loaded(name, None, text, (_diag("L102", f"about {items} YAML items; the limit is {MAX_ITEMS}", name, 1, 1,
                                               hint="split the config or remove generated content"),))
    tree, problem = _parse(text, name)
    if problem is None and tree is None:
        problem = _diag("L104", "document is empty (only comments or null)", name, 1, 1)
    if problem is None:
        problem = _check_shape(tree, name, require_mapping)
    if problem is not None:
        if problem.code == "L106":  # report every duplicate key in one run, not only the first
            return Loaded(name, None, text, tuple(_all_duplicates(text, name) or [problem]))
        return Loaded(name, None, text, (problem,))
    return Loaded(name, tree, text, ())


def position(tree: Any, path: PathT, *, value: bool = False) -> tuple[int, int]:
    """1-based (line, col) of ``path`` in ``tree``: the deepest part of the path that exists.

    Mapping entries point at their key (or value with ``value=True``); sequence items at the item.
    """
    line, col = 0, 0
    node = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        try:
            if isinstance(node, CommentedMap) and part in node:
                pos = node.lc.value(part) if (value and last) else node.lc.key(part)
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                pos = node.lc.item(part)
                node = node[part]
            else:
                break
        except (AttributeError, KeyError, TypeError, IndexError):
            break
        if pos and pos[0] is not None:
            line, col = pos[0] + 1, pos[1] + 1
    if line == 0 and isinstance(tree, (CommentedMap, CommentedSeq)):
        line, col = 1, 1
    return line, col


def span(tree: Any, file: str, path: PathT, *, value: bool = False) -> Span:
    line, col = position(tree, path, value=value)
    return Span(file, line, col)


def json_path(path: PathT) -> str:
    """``("llm_providers", 0, "model")`` -> ``llm_providers[0].model``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def to_plain(node: Any) -> Any:
    """ruamel tree -> plain dict/list/str/int/float/bool/None (dates become ISO strings)."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (datetime.date, datetime.datetime)):
        return node.isoformat()
    return str(node)


# -- internals ---------------------------------------------------------------------------------

def _estimate_items(text: str) -> int:
    """A cheap upper-bound-ish count of YAML nodes: lines plus flow separators and openers."""
    return text.count("\n") + text.count(",") + text.count("[") + text.count("{")


def _looks_like_path(text: str) -> bool:
    # A one-line string naming a missing file should say "cannot read", not parse as YAML text.
    return text.endswith((".yaml", ".yml", ".json", ".lock")) and ": " not in text

def _diag(code: str, message: str, file: str, line: int = 0, col: int = 0, *, path: str = "", hint: str = "") -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, Span(file, line, col), path, hint)


def _decode(raw: bytes, name: str) -> tuple[str, Diagnostic | None]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        nul = exc.start if nul < 0 else min(nul, exc.start)
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        col = nul - (raw.rfind(b"\n", 0, nul) + 1) + 1
        return "", _diag("L103", "not UTF-8 text: binary data at this position", name, line, col,
                         hint="configs are UTF-8 YAML text")
    return text, None


def _parse(text: str, name: str) -> tuple[Any, Diagnostic | None]:
    yaml = YAML(typ="rt", pure=True)
    # Round-trip construction (positions in .lc) without comment gathering: a third faster, and
    # nothing here dumps the tree back. Duplicate keys are still refused by the constructor.
    yaml.Scanner, yaml.Parser = Scanner, Parser
    try:
        return yaml.load(text), None
    except DuplicateKeyError as exc:
        line, col = _mark(exc.problem_mark)
        first = _mark(exc.context_mark)[0]
        key = _duplicate_key(exc.problem or "")
        return None, _diag("L106", f"duplicate key {key!r} (first defined at line {first})", name, line, col,
                           hint="YAML keeps only one of them; remove or rename the other")
    except MarkedYAMLError as exc:
        line, col = _mark(exc.problem_mark or exc.context_mark)
        problem = exc.problem or "invalid YAML"
        if "expected a single document" in f"{exc.context} {problem}":
            return None, _diag("L110", "more than one YAML document (---); a config is one document", name, line, col)
        context = f" {exc.context}" if exc.context else ""
        return None, _diag("L105", f"YAML syntax error:{context}: {problem}", name, line, col)
    except RecursionError:
        return None, _diag("L108", f"nesting is too deep to parse (limit {MAX_DEPTH})", name, 1, 1)
    except YAMLError as exc:
        # ReaderError (control characters) and friends carry a position but no problem_mark.
        line, col = _reader_position(exc, text)
        return None, _diag("L105", f"YAML error: {_short(exc)}", name, line, col)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        # ruamel constructors raise these on malformed tags or scalars (e.g. !!int abc, !!timestamp x).
        return None, _diag("L105", f"YAML error: cannot construct a value ({type(exc).__name__})", name, 1, 1)


def _all_duplicates(text: str, name: str) -> list[Diagnostic]:
    """Every duplicate mapping key, found on the composed node graph (no construction, so no raise)."""
    yaml = YAML(typ="rt", pure=True)
    yaml.Scanner, yaml.Parser = Scanner, Parser
    try:
        root = yaml.compose(text)
    except (YAMLError, RecursionError):
        return []
    found: list[Diagnostic] = []
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes or not isinstance(getattr(node, "value", None), list):
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                stack.append(value_node)
                key = key_node.value if isinstance(key_node, ScalarNode) else None
                if key is None or key == "<<":
                    continue
                if key in first:
                    line, col = _mark(key_node.start_mark)
                    found.append(_diag("L106", f"duplicate key {key!r} (first defined at line {first[key]})", name,
                                       line, col, hint="YAML keeps only one of them; remove or rename the other"))
                else:
                    first[key] = _mark(key_node.start_mark)[0]
        else:
            stack.extend(node.value)
    return sorted(found, key=lambda d: (d.span.line, d.span.col))


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return 0, 0
    return int(getattr(mark, "line", -1)) + 1, int(getattr(mark, "column", -1)) + 1


def _duplicate_key(problem: str) -> str:
    # ruamel: 'found duplicate key "KEY" with value "..."'; keep the key only (values may be secrets).
    head = problem.split('" with value', 1)[0]
    return head.split('duplicate key "', 1)[-1] if 'duplicate key "' in head else "?"


def _reader_position(exc: YAMLError, text: str) -> tuple[int, int]:
    pos = getattr(exc, "position", None)
    if isinstance(pos, int) and 0 <= pos <= len(text):
        return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
    return 1, 1


def _short(exc: YAMLError) -> str:
    reason = getattr(exc, "reason", None)
    character = getattr(exc, "character", None)
    if reason:
        return f"{reason}" + (f" (character {ord(character):#x})" if isinstance(character, str) and character else "")
    return type(exc).__name__


def _check_shape(tree: Any, name: str, require_mapping: bool = True) -> Diagnostic | None:
    """Alias expansion size, cycles and depth, walked iteratively (no recursion on hostile input)."""
    sizes: dict[int, int] = {}
    depth_of: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        if done:
            on_stack.discard(key)
            children = list(node.values()) if isinstance(node, dict) else list(node)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            depth_of[key] = 1 + max((depth_of.get(id(c), 0) for c in children), default=0)
            if sizes[key] > MAX_NODES:
                return _diag("L107", f"anchors/aliases expand to more than {MAX_NODES} nodes", name, 1, 1,
                             hint="YAML aliases (*name) re-use anchors; do not nest them exponentially")
            if depth_of[key] > MAX_DEPTH:
                line, col = _node_line(node)
                return _diag("L108", f"nesting deeper than {MAX_DEPTH} levels", name, line, col)
            continue
        if key in sizes:
            continue
        if key in on_stack:
            return _diag("L107", "an alias refers to its own anchor (recursive structure)", name, *_node_line(node))
        on_stack.add(key)
        stack.append((node, True))
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, False) for c in children if isinstance(c, (dict, list)))
    if require_mapping and not isinstance(tree, dict):
        kind = "a list" if isinstance(tree, list) else "a scalar"
        return _diag("L109", f"top level is {kind}; a config is a mapping of keys (version, listeners, ...)", name, 1, 1)
    return None


def _node_line(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is not None and getattr(lc, "line", None) is not None:
        return lc.line + 1, lc.col + 1
    return 1, 1
