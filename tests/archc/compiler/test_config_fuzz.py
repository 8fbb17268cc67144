"""Fuzz `archc check --format json` with mutated example configs: never an internal error.

2,000 seeded cases (reproducible: the seed is the case number) over every config in examples/:
key deletions, values swapped for other types, unicode (lone surrogates, surrogate pairs escaped as
two halves, RTL marks, emoji) in keys and values, unknown keys, and YAML tricks (anchors and merge
keys, tags, several documents, duplicate keys, tabs, deep nesting, huge numbers, dates, bare
words). Each case runs the real command in-process and must exit 0 or 1 with one JSON report on
stdout, nothing on stderr. A failure names the case and keeps its input under the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from archc.cli import main

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CASES = 2000

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 10**40, 1.5, -0.0, "", " ", "x", "$", "${}", "$UNSET_VAR", "30", "30x", "-5s",
    [], [None], ["minute"], [[[]]], {}, {"a": 1}, {"": None}, {"model": {"model": []}},
    "bogus\ud800", "\udc00\ud800", "\ud83d\ude00", "😀", "\u202eevil", "a\u0000b", "é" * 300, "x" * 5000,
]
ODD_KEYS = ["bogus\ud800", "\ud83d\ude00", "😀", "\u202ekey", "", " ", "model ", "Model", "default", "unit",
            "<<", "?", "-", "0", "null"]
YAML_TRICKS = [
    "base: &a {model: openai/gpt-4o}\nmodel_providers: [*a, *a]\n",
    "model_providers:\n  - <<: {model: openai/gpt-4o, default: true}\n    name: x\n",
    "model_providers: !!python/object:os.system {}\n",
    "version: !!binary aGVsbG8=\n",
    "version: v0.1.0\n---\nversion: v0.2.0\n",
    "version: v0.1.0\nversion: v0.3.0\n",
    "listeners:\n\t- name: x\n",
    "model_providers: " + "[" * 200 + "]" * 200 + "\n",
    "model_providers: " + "{a: " * 60 + "1" + "}" * 60 + "\n",
    "ratelimits:\n  - {model: openai/gpt-4o, selector: {key: a, value: b}, limit: {tokens: 1e999, unit: minute}}\n",
    "ratelimits:\n  - {model: m, selector: {key: a, value: b}, limit: {tokens: 10, unit: [minute]}}\n",
    "ratelimits:\n  - {model: m, selector: {key: a, value: b}, limit: {tokens: 10, unit: {minute: 1}}}\n",
    "version: 2024-01-01\nlisteners: [{name: llm, timeout: 12:30:00}]\n",
    "model_providers: [{model: yes, default: no, access_key: 0o777}]\n",
    "? [complex, key]\n: value\n",
    "\ufeffversion: v0.1.0\n",
    "model_providers:\n  - model: \"openai/gpt-4o\\ud800\"\n",
    "model_providers:\n  - {model: \"\\ud83d\\ude00/x\", name: \"\\udc00\"}\n",
    "a: &x [*x]\n",
    "x: &l1 [a, a, a, a]\ny: &l2 [*l1, *l1, *l1, *l1]\nz: [*l2, *l2, *l2, *l2]\n",
    "!!null\n",
    "[1, 2, 3]\n",
    "just a string\n",
    "",
    "\x00\x01\x02",
    "model_providers:\n  - model: openai/gpt-4o\n    routing_preferences: [{name: \"\\ud800\", description: \"\\udfff\"}]\n",
]


def _load_examples() -> list[Any]:
    yaml = YAML(typ="safe")
    return [yaml.load(path.read_text(encoding="utf-8")) for path in EXAMPLES]


SEEDS = _load_examples()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _parent(root: Any, path: tuple) -> Any:
    for step in path[:-1]:
        root = root[step]
    return root


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return doc
        path = rng.choice(paths)
        parent = _parent(doc, path)
        op = rng.choice(("delete", "swap", "swap", "rekey", "add", "duplicate"))
        if op == "delete":
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent.pop(path[-1])
        elif op == "swap":
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op == "rekey" and isinstance(parent, dict):
            parent[rng.choice(ODD_KEYS)] = parent.pop(path[-1])
        elif op == "add":
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[rng.choice(ODD_KEYS)] = copy.deepcopy(rng.choice(ODD_VALUES))
            elif isinstance(target, list):
                target.append(copy.deepcopy(rng.choice(ODD_VALUES)))
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    return doc


def _text(doc: Any, rng: random.Random) -> str:
    """As YAML (flow or block) or JSON (a config file may be either)."""
    if rng.random() < 0.25:
        return json.dumps(doc, ensure_ascii=rng.random() < 0.5, default=str)
    yaml = YAML()
    yaml.default_flow_style = rng.random() < 0.3
    yaml.allow_unicode = rng.random() < 0.5
    out = io.StringIO()
    try:
        yaml.dump(doc, out)
    except Exception:  # a value ruamel cannot write (it refuses some control characters): write JSON
        return json.dumps(doc, default=str)
    return out.getvalue()


def _case(n: int) -> str:
    rng = random.Random(n)
    if n % 8 == 7:  # a YAML trick, alone or prepended to a mutated example
        trick = YAML_TRICKS[(n // 8) % len(YAML_TRICKS)]
        return trick if rng.random() < 0.5 else trick + _text(_mutate(rng.choice(SEEDS), rng), rng)
    text = _text(_mutate(rng.choice(SEEDS), rng), rng)
    if n % 13 == 0:  # and a text-level cut: half a file
        text = text[: rng.randint(0, len(text))]
    return text


def _check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["check", str(path), "--format", "json"])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("chunk", range(8))
def test_mutated_configs_never_crash_the_compiler(tmp_path: Path, chunk: int) -> None:
    failures = []
    for n in range(chunk, CASES, 8):
        path = tmp_path / f"case{n}.yaml"
        path.write_bytes(_case(n).encode("utf-8", "surrogatepass"))
        code, out, err = _check(path)
        problem = None
        if code not in (0, 1):
            problem = f"exit {code}"
        elif err:
            problem = f"stderr: {err[:200]!r}"
        else:
            try:
                report = json.loads(out)
                if not isinstance(report.get("diagnostics"), list) or report["ok"] is not (code == 0):
                    problem = f"report does not match the exit code: {out[:200]!r}"
            except ValueError:
                problem = f"stdout is not one JSON report: {out[:200]!r}"
        if problem:
            failures.append(f"case {n} ({path}): {problem}")
        else:
            path.unlink()
    assert not failures, "\n".join(failures[:10])


def test_the_fuzz_reaches_resolve_and_both_exits(tmp_path: Path) -> None:
    """The mutations are not all rejected at load: many configs stay valid, many fail in each stage."""
    codes: dict[str, int] = {}
    for n in range(0, 200):
        path = tmp_path / "c.yaml"
        path.write_bytes(_case(n).encode("utf-8", "surrogatepass"))
        code, out, _ = _check(path)
        report = json.loads(out)
        if code == 0:
            codes["ok"] = codes.get("ok", 0) + 1
        for d in report["diagnostics"]:
            stage = d["code"][:2]  # L1xx load, V2xx validate, R3xx resolve, E4xx emit
            codes[stage] = codes.get(stage, 0) + 1
    assert codes.get("ok", 0) >= 10, codes
    assert all(codes.get(stage, 0) >= 10 for stage in ("V2", "R3")), codes
