"""Golden files, updated in place: `archc test --update` rewrites mismatched expectations.

Stage: golden tool (imports archc.review.golden and ruamel). Positions from ruamel's round-trip loader
locate each changed key and value; only those tokens are replaced, so every other byte stays.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from archc.review.golden import Result
from archc.compiler.load import to_plain
from archc.output import json_text


def update_files(results: Sequence[Result]) -> list[Path]:
    """Rewrite the expectations of mismatched cases in their files; returns the files changed."""
    by_file: dict[Path, list[Result]] = {}
    for result in results:
        if not result.ok:
            by_file.setdefault(result.case.file, []).append(result)
    changed = []
    for path, file_results in by_file.items():
        text = path.read_text(encoding="utf-8")
        new_text = update_text(text, file_results)
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
            changed.append(path)
    return changed


def update_text(text: str, results: Sequence[Result]) -> str:
    """``text`` with each result's mismatched expectations rewritten to what was observed.

    The file is read with ruamel's round-trip loader, whose node positions locate each changed
    key and value; only those tokens are replaced, so every other byte (comments, ordering,
    quoting, indentation, flow or block style) stays as written. The result is re-read to check it.
    """
    tree = _yaml().load(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []
    wanted: dict[int, dict[str, Any]] = {}
    for result in results:
        expect = tree[result.case.index]["expect"]
        edits.extend(_expect_edits(lines, expect, result))
        wanted[result.case.index] = _updated_expect(result)
    for line_no, start, end, replacement in sorted(edits, reverse=True):
        line = lines[line_no]
        lines[line_no] = line[:start] + replacement + line[end:]
    new_text = "".join(lines)
    check = _yaml().load(new_text)
    for index, expect in wanted.items():
        if to_plain(check[index]["expect"]) != expect:
            raise GoldenUpdateError(f"cannot rewrite case {tree[index]['id']!r} in place (multi-line value?)")
    return new_text


class GoldenUpdateError(ValueError):
    """An expectation could not be rewritten in place without touching other text."""


def _updated_expect(result: Result) -> dict[str, Any]:
    got = result.got.as_expect()
    out: dict[str, Any] = {}
    for key, value in result.case.expect.items():
        if key not in result.mismatched:
            out[key] = list(value) if isinstance(value, tuple) else value  # a list of models reads back as a list
        elif got[key] is not None:
            out[key] = got[key]
        else:
            swapped = _SWAP.get(key)
            if swapped is not None and got[swapped] is not None:
                out[swapped] = got[swapped]
            else:
                out[key] = list(value) if isinstance(value, tuple) else value  # nothing to write (no provider would serve it)
    return out


_SWAP = {"route": "fallback", "fallback": "route"}


def _expect_edits(lines: list[str], expect: CommentedMap, result: Result) -> list[tuple[int, int, int, str]]:
    flow = bool(expect.fa.flow_style())
    got = result.got.as_expect()
    edits = []
    for key in result.mismatched:
        key_name, value = key, got[key]
        if value is None:
            swapped = _SWAP.get(key)
            if swapped is None or got[swapped] is None:
                continue
            key_name, value = swapped, got[swapped]
            k_line, k_col = expect.lc.key(key)
            k_end = _token_end(lines[k_line], k_col, flow, key=True)
            edits.append((k_line, k_col, k_end, _scalar(key_name, lines[k_line][k_col])))
        v_line, v_col = expect.lc.value(key)
        v_end = _token_end(lines[v_line], v_col, flow, key=False)
        edits.append((v_line, v_col, v_end, _scalar(value, lines[v_line][v_col])))
    return edits


# Written plain when it reads back as the same string (inner spaces allowed, as in "code generation").
_PLAIN_SAFE = re.compile(r"^[A-Za-z_](?:[A-Za-z0-9_./@+ -]*[A-Za-z0-9_./@+-])?$")
_PLAIN_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def _scalar(value: str, first_char: str) -> str:
    """``value`` as a YAML scalar, in the quoting style of the token it replaces when it can."""
    if first_char == "'":
        return "'" + value.replace("'", "''") + "'"
    if first_char != '"' and _PLAIN_SAFE.match(value) and value.lower() not in _PLAIN_RESERVED:
        return value
    return json_text(value)


def _token_end(line: str, start: int, flow: bool, *, key: bool) -> int:
    """End column (exclusive) of the single-line scalar (or flow list: a list of models) starting at ``start``."""
    quote = line[start] if start < len(line) else ""
    if quote == "[" and not key:  # replaced whole by the observed scalar; a list over several lines is refused after
        close = line.find("]", start)
        return close + 1 if close != -1 else len(line.rstrip("\r\n"))
    if quote == '"':
        i = start + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        return len(line.rstrip("\r\n"))
    if quote == "'":
        i = start + 1
        while i < len(line):
            if line[i] == "'":
                if line[i + 1:i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return len(line.rstrip("\r\n"))
    body = line.rstrip("\r\n")
    stops = [body.find(" #", start)]
    if key:
        stops.append(body.find(":", start))
    if flow:
        stops += [body.find(",", start), body.find("}", start)]
    ends = [s for s in stops if s != -1]
    end = min(ends) if ends else len(body)
    return len(body[:end].rstrip())


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml
