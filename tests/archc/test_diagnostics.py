"""Diagnostic renderers: text (with and without colour), JSON and GitHub annotations."""

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from archc.diagnostics import CODES, CompileError, Diagnostic, Severity, Span, format_github, format_json, format_text

D1 = Diagnostic("V201", Severity.ERROR, "unknown key 'acess_key'", Span("c.yaml", 8, 5), "p[0].acess_key",
                "did you mean 'access_key'?")
D2 = Diagnostic("R307", Severity.WARNING, "alias 'x' floats", Span("c.yaml", 3, 3), "model_aliases.x")


def test_text_format_sorted_with_summary() -> None:
    text = format_text([D1, D2])
    lines = text.splitlines()
    assert lines[0] == "c.yaml:3:3: R307 warning: alias 'x' floats"
    assert lines[2] == "c.yaml:8:5: V201 error: unknown key 'acess_key'"
    assert "hint: did you mean 'access_key'?" in lines[3]
    assert lines[-1] == "1 error(s), 1 warning(s)"
    assert "\x1b[" not in text and "\x1b[" in format_text([D1], color=True)
    assert format_text([]) == ""


def test_json_format() -> None:
    doc = json.loads(format_json([D1, D2]))
    assert doc["ok"] is False and doc["errors"] == 1 and doc["warnings"] == 1
    assert doc["diagnostics"][1] == {"code": "V201", "severity": "error", "message": "unknown key 'acess_key'",
                                     "file": "c.yaml", "line": 8, "col": 5, "path": "p[0].acess_key",
                                     "hint": "did you mean 'access_key'?"}


def test_github_format_escapes() -> None:
    d = Diagnostic("L105", Severity.ERROR, "bad: 100%\nnext", Span("dir,x/c.yaml", 2, 1))
    out = format_github([d, D2])
    assert out.splitlines()[1] == "::error file=dir%2Cx/c.yaml,line=2,col=1,title=L105::bad: 100%25%0Anext"
    assert out.splitlines()[0].startswith("::warning file=c.yaml,line=3,col=3,title=R307::")


def test_compile_error_carries_diagnostics() -> None:
    err = CompileError([D1])
    assert err.diagnostics == [D1] and str(err).startswith("c.yaml:8:5: V201 error")


def test_code_table_is_stable_and_prefixed() -> None:
    for code in CODES:
        assert code[0] in "LVREG" and len(code) == 4
        assert {"L": "1", "V": "2", "R": "3", "E": "4", "G": "5"}[code[0]] == code[1]


def test_every_code_is_documented_in_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:config -->", 1)[1].split("<!-- /section:config -->", 1)[0]
    missing = [code for code in CODES if f"| {code} |" not in section]
    assert not missing


def test_schemas_are_valid_2020_12() -> None:
    for path in sorted((Path(__file__).resolve().parents[2] / "schemas").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
