"""archc.review.golden: the golden file format (schema, diagnostics with positions) and --update in place."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import jsonschema
import pytest

from archc.review import golden
from archc.review import golden_update
from archc.review.golden import Outcome, Result

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "golden"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(golden.SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_malformed_golden_file_gets_positioned_diagnostics(path: Path) -> None:
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    cases, diags = golden.load_file(path)
    assert cases == []
    got = [{"code": d.code, "line": d.span.line, "col": d.span.col} for d in diags]
    assert got == expected
    assert all(d.span.file == str(path) for d in diags)


def test_every_invalid_fixture_has_expectations() -> None:
    assert len(INVALID) >= 10
    for path in INVALID:
        assert path.with_suffix(".expected.json").is_file(), path


def test_valid_file_loads_cases_with_positions() -> None:
    path = FIXTURES / "valid" / "commented.yaml"
    cases, diags = golden.load_file(path)
    assert diags == []
    assert [(c.id, c.line, c.index) for c in cases] == [("review-diff", 4, 0), ("small-talk", 16, 1), ("anthropic-shape", 21, 2)]
    review, talk, anthropic = cases
    assert review.expect == golden.Expect(route="code_review", model="anthropic/claude-sonnet-4-5")
    assert review.format == golden.OPENAI_CHAT and review.model is None
    assert talk.model == "arch.chat.v1" and talk.expect.fallback == "other"
    assert anthropic.format == golden.ANTHROPIC_MESSAGES and anthropic.system == "You are a coding assistant."
    assert golden.needs_router(review) and golden.needs_router(talk)


def test_folders_are_searched_recursively_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    src = (FIXTURES / "valid" / "commented.yaml").read_text(encoding="utf-8")
    (tmp_path / "b" / "two.yml").write_text(src, encoding="utf-8")
    (tmp_path / "a.yaml").write_text(src, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a golden file", encoding="utf-8")
    gset = golden.load_golden([tmp_path])
    assert gset.ok
    assert gset.files == (tmp_path / "a.yaml", tmp_path / "b" / "two.yml")
    assert len(gset.cases) == 6


def test_load_golden_collects_diagnostics_from_every_file() -> None:
    gset = golden.load_golden([FIXTURES / "invalid" / "syntax.yaml", FIXTURES / "invalid" / "duplicate_id.yaml",
                               FIXTURES / "valid" / "commented.yaml"])
    assert not gset.ok
    assert sorted(d.code for d in gset.diagnostics) == ["G502", "L105"]
    assert len(gset.cases) == 3


def test_result_compares_only_the_expected_keys() -> None:
    cases, _ = golden.load_file(FIXTURES / "valid" / "commented.yaml")
    review = cases[0]
    same = Result(review, Outcome(route="code_review", model="anthropic/claude-sonnet-4-5", fallback=None))
    assert same.ok and same.mismatched == ()
    other_model = Result(review, Outcome(route="code_review", model="openai/gpt-4o", fallback=None))
    assert other_model.mismatched == ("model",)
    fell_back = Result(review, Outcome(route=None, model="openai/gpt-4o-mini", fallback="other"))
    assert fell_back.mismatched == ("route", "model")
    refused = Result(review, Outcome(route=None, model=None, fallback=None, error="not_found_error: no model"))
    assert not refused.ok
    assert golden.describe_outcome(refused.got) == "error=not_found_error: no model"


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """Pairs (old line, new line) for every line that differs; line count must not change."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(a) == len(b), "".join(difflib.unified_diff(a, b))
    return [(x, y) for x, y in zip(a, b) if x != y]


def test_update_rewrites_only_the_changed_expectations(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    original = (FIXTURES / "valid" / "commented.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    cases, _ = golden.load_file(path)
    results = [
        Result(cases[0], Outcome(route="code_review", model="openai/gpt-4o", fallback=None)),  # model changed
        Result(cases[1], Outcome(route=None, model="openai/gpt-4o-mini", fallback="other")),  # unchanged
        Result(cases[2], Outcome(route="sql", model="openai/o3 mini", fallback=None)),  # fallback -> route
    ]
    assert golden_update.update_files(results) == [path]
    updated = path.read_text(encoding="utf-8")
    assert _changed_lines(original, updated) == [
        ('    model: "anthropic/claude-sonnet-4-5"   # quoted value keeps its quotes\n',
         '    model: "openai/gpt-4o"   # quoted value keeps its quotes\n'),
        ("    fallback: other   # swapped to a route by --update\n",
         "    route: sql   # swapped to a route by --update\n"),
        ("    model: 'openai/gpt-4o-mini'\n", "    model: 'openai/o3 mini'\n"),
    ]
    again, diags = golden.load_file(path)
    assert diags == []
    assert [c.expect for c in again] == [
        golden.Expect(route="code_review", model="openai/gpt-4o"),
        golden.Expect(fallback="other", model="openai/gpt-4o-mini"),
        golden.Expect(route="sql", model="openai/o3 mini"),
    ]


def test_update_in_flow_style_mapping_and_route_to_fallback(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    original = (
        "- id: a   # keep me\n"
        "  messages: [{role: user, content: hi}]\n"
        "  expect: {route: code_review, model: openai/gpt-4o}   # and me\n"
        "- id: b\n"
        "  messages: [{role: user, content: 'needs: quoting'}]\n"
        "  expect: {model: openai/gpt-4o}\n"
    )
    path.write_text(original, encoding="utf-8")
    cases, _ = golden.load_file(path)
    results = [
        Result(cases[0], Outcome(route=None, model="openai/gpt-4o-mini", fallback="no_match")),
        Result(cases[1], Outcome(route=None, model="weird: name", fallback="other")),
    ]
    golden_update.update_files(results)
    updated = path.read_text(encoding="utf-8")
    assert _changed_lines(original, updated) == [
        ("  expect: {route: code_review, model: openai/gpt-4o}   # and me\n",
         "  expect: {fallback: no_match, model: openai/gpt-4o-mini}   # and me\n"),
        ("  expect: {model: openai/gpt-4o}\n", '  expect: {model: "weird: name"}\n'),
    ]
    again, diags = golden.load_file(path)
    assert diags == [] and again[1].expect.model == "weird: name"


def test_update_leaves_passing_files_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    original = (FIXTURES / "valid" / "commented.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    cases, _ = golden.load_file(path)
    results = [Result(cases[1], Outcome(route=None, model="openai/gpt-4o-mini", fallback="other"))]
    assert golden_update.update_files(results) == []
    assert path.read_text(encoding="utf-8") == original


def test_check_names_warns_about_unknown_routes_and_models() -> None:
    cases, _ = golden.load_file(FIXTURES / "valid" / "commented.yaml")
    diags = golden.check_names(cases, ["code_review"], ["openai/gpt-4o-mini"])
    assert [(d.code, d.severity.value, d.span.line) for d in diags] == [("G503", "warning", 4)]


def test_a_list_of_models_expects_any_member_of_a_routes_pool(tmp_path: Path) -> None:
    """``expect.model: [a, b]``: served by any of them (a pool whose pick is the policy's, live); a
    miss names the list, `--update` replaces it in place by what served, unknown members warn."""
    path = tmp_path / "pool.yaml"
    original = (
        "- id: cheap-code   # a pool of two\n"
        "  messages: [{role: user, content: write code}]\n"
        "  expect: {route: code, model: [openai/small, openai/big]}\n"
        "- id: block\n"
        "  messages: [{role: user, content: hi}]\n"
        "  expect:\n"
        "    model: [openai/small, openai/typo]   # keep me\n"
    )
    path.write_text(original, encoding="utf-8")
    cases, diags = golden.load_file(path)
    assert diags == [] and cases[0].expect.model == ("openai/small", "openai/big")
    assert Result(cases[0], Outcome(route="code", model="openai/big", fallback=None)).ok
    miss = Result(cases[0], Outcome(route="code", model="openai/other", fallback=None))
    assert miss.mismatched == ("model",)
    assert golden.describe_expect(cases[0].expect) == "route=code model=openai/small|openai/big"
    warnings = golden.check_names(cases, ["code"], ["openai/small", "openai/big", "openai/other"])
    assert [w.message for w in warnings] == ["case 'block' expects model 'openai/typo', which is not a provider name in the config"]
    golden_update.update_files([miss, Result(cases[1], Outcome(route=None, model="openai/big", fallback="other"))])
    assert _changed_lines(original, path.read_text(encoding="utf-8")) == [
        ("  expect: {route: code, model: [openai/small, openai/big]}\n", "  expect: {route: code, model: openai/other}\n"),
        ("    model: [openai/small, openai/typo]   # keep me\n", "    model: openai/big   # keep me\n"),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  messages: [{role: user, content: hi}]\n  expect: {model: []}\n", encoding="utf-8")
    assert [d.code for d in golden.load_file(bad)[1]] == ["G501"]
