"""`archc test`: golden cases through the real router (scripted tiny CTranslate2 models) and the
runtime's resolution; table, JSON, GitHub annotations, JUnit XML, --update, missing-model rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import junitparser
import pytest

from archc.cli import main
from archc.compiler import bundle_from_path

REPO = Path(__file__).resolve().parents[3]
FIX = REPO / "tests" / "fixtures" / "golden"
CONFIG = FIX / "configs" / "routing.yaml"
CASES = FIX / "e2e" / "cases.yaml"


@pytest.fixture(scope="module")
def review_model(scripted_router_model: Callable[..., Path]) -> Path:
    return scripted_router_model('{"route": "code_review"}')


@pytest.fixture(scope="module")
def summary_model(scripted_router_model: Callable[..., Path]) -> Path:
    return scripted_router_model('{"route": "summarization"}')


def _row(out: str, case_id: str) -> list[str]:
    for line in out.splitlines():
        cells = line.split()
        if len(cells) > 1 and cells[1] == case_id:
            return cells
    raise AssertionError(f"no row for {case_id} in:\n{out}")


def test_matching_cases_pass_with_table_and_junit(review_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "reports" / "golden.xml"
    assert main(["test", str(CONFIG), str(CASES), "--model-dir", str(review_model), "--junit", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "3 cases: 3 ok, 0 mismatches"
    row = _row(out, "review-anthropic")
    assert row[:4] == ["ok", "review-anthropic", "route=code_review", "model=anthropic/claude-sonnet-4-5"]
    assert float(row[-1]) > 0  # router ms: the model really ran
    xml = junitparser.JUnitXml.fromfile(str(report))
    assert (xml.tests, xml.failures, xml.errors) == (3, 0, 0)
    (suite,) = list(xml)
    assert [c.name for c in suite] == ["review-openai", "review-anthropic", "alias-overridden"]


RESPONSES_CASES = """\
- id: codex-turn
  format: openai_responses
  model: arch.chat.v1
  instructions: You are a coding agent.
  input:
  - {role: developer, content: [{type: input_text, text: Use the tools.}]}
  - {type: message, role: user, content: [{type: input_text, text: Review the retry loop in client.py.}]}
  - {type: function_call, call_id: c1, name: exec_command, arguments: '{"cmd": "cat client.py"}'}
  - {type: function_call_output, call_id: c1, output: "for attempt in range(3): ..."}
  expect:
    route: code_review
    model: anthropic/claude-sonnet-4-5
- id: string-input
  format: openai_responses
  input: Is this diff safe?
  expect:
    route: code_review
"""


def test_cases_in_responses_form_replay_like_chat(review_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "responses.yaml"
    cases.write_text(RESPONSES_CASES, encoding="utf-8")
    assert main(["test", str(CONFIG), str(cases), "--model-dir", str(review_model)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "2 cases: 2 ok, 0 mismatches"
    assert _row(out, "codex-turn")[:4] == ["ok", "codex-turn", "route=code_review", "model=anthropic/claude-sonnet-4-5"]


def test_a_responses_case_needs_input_not_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "bad.yaml"
    cases.write_text("- id: mixed\n  format: openai_responses\n  messages: [{role: user, content: hi}]\n"
                     "  expect: {route: code_review}\n", encoding="utf-8")
    assert main(["test", str(CONFIG), str(cases)]) == 1
    err = capsys.readouterr()
    assert "G501" in err.out + err.err and "bad.yaml:1" in err.out + err.err


def test_mismatches_exit_1_with_github_annotations_and_junit_failures(summary_model: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "golden.xml"
    code = main(["test", str(CONFIG), str(CASES), "--model-dir", str(summary_model), "--junit", str(report),
                 "--format", "github"])
    assert code == 1
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert [e.split(",")[1] for e in errors] == ["line=4", "line=12", "line=25"]
    assert "got route=summarization model=openai/gpt-4o" in errors[0]
    assert _row(out, "review-openai")[:2] == ["FAIL", "review-openai"]
    assert out.splitlines()[-1] == "3 cases: 0 ok, 3 mismatches"
    xml = junitparser.JUnitXml.fromfile(str(report))
    assert (xml.tests, xml.failures) == (3, 3)
    failure = list(list(xml)[0])[0].result[0]
    assert isinstance(failure, junitparser.Failure)
    assert failure.message == ("expected route=code_review model=anthropic/claude-sonnet-4-5, "
                               "got route=summarization model=openai/gpt-4o")


def test_json_format(summary_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(CONFIG), str(CASES), "--model-dir", str(summary_model), "--format", "json",
                 "--case", "alias-overridden"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ok"], doc["total"], doc["failed"]) == (False, 1, 1)
    (case,) = doc["cases"]
    assert doc["diagnostics"] == []
    assert case["id"] == "alias-overridden" and case["line"] == 25 and case["mismatched"] == ["route"]
    assert case["expected"] == {"route": "code_review"}
    assert case["got"] == {"route": "summarization", "fallback": None, "model": "openai/gpt-4o", "error": None}


def test_update_rewrites_expectations_keeping_comments(summary_model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.yaml"
    shutil.copyfile(CASES, cases)
    before = cases.read_text(encoding="utf-8")
    assert main(["test", str(CONFIG), str(cases), "--model-dir", str(summary_model), "--update"]) == 0
    assert f"updated 3 case(s) in 1 file(s): {cases}" in capsys.readouterr().err
    after = cases.read_text(encoding="utf-8")
    old_lines, new_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert changed == [
        ("    route: code_review\n", "    route: summarization\n"),
        ("    model: anthropic/claude-sonnet-4-5   # the reviewer\n", "    model: openai/gpt-4o   # the reviewer\n"),
        ("    route: code_review\n", "    route: summarization\n"),
        ("    model: anthropic/claude-sonnet-4-5\n", "    model: openai/gpt-4o\n"),
        ("    route: code_review\n", "    route: summarization\n"),
    ]
    # Updated expectations now pass.
    assert main(["test", str(CONFIG), str(cases), "--model-dir", str(summary_model)]) == 0


def test_no_router_model_fails_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.xml"
    code = main(["test", str(CONFIG), str(CASES), "--model-dir", str(tmp_path / "no-model"), "--junit", str(report)])
    err = capsys.readouterr().err
    assert code == 1
    assert "router model 'katanemo/Arch-Router-1.5B' is not available" in err
    assert "cannot run without it" in err
    xml = junitparser.JUnitXml.fromfile(str(report))
    assert (xml.tests, xml.errors) == (1, 1)
    assert main(["test", str(CONFIG), str(CASES), "--model-dir", str(tmp_path / "no-model"), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and [d["code"] for d in doc["diagnostics"]] == ["G504"]


def test_no_router_model_is_fine_when_no_case_expects_routing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "no-routing.yaml"
    cases.write_text(
        "- id: default-when-router-missing\n"
        "  messages: [{role: user, content: hi}]\n"
        "  expect: {fallback: no_router_model, model: openai/gpt-4o-mini}\n"
        "- id: alias-when-router-missing\n"
        "  model: arch.chat.v1\n"
        "  messages: [{role: user, content: hi}]\n"
        "  expect: {model: openai/gpt-4o-mini}\n", encoding="utf-8")
    assert main(["test", str(CONFIG), str(cases), "--model-dir", str(tmp_path / "no-model")]) == 0
    out = capsys.readouterr().out
    assert "note: router model 'katanemo/Arch-Router-1.5B' is not available" in out
    assert out.splitlines()[-1] == "2 cases: 2 ok, 0 mismatches"


def test_bundle_json_input_and_bypass_semantics(review_model: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A compiled bundle works like its config; with explicit_model_bypass a named model skips the router."""
    text = CONFIG.read_text(encoding="utf-8") + "\nrouting:\n  explicit_model_bypass: true\n"
    config = tmp_path / "bypass.yaml"
    config.write_text(text, encoding="utf-8")
    bundle = tmp_path / "bypass.bundle.json"
    bundle.write_bytes(bundle_from_path(config).to_bytes())
    cases = tmp_path / "bypass-cases.yaml"
    cases.write_text(
        "- id: alias-bypasses-router\n"
        "  model: arch.chat.v1\n"
        "  messages: [{role: user, content: Review this diff}]\n"
        "  expect: {fallback: bypass, model: openai/gpt-4o-mini}\n"
        "- id: no-model-is-routed\n"
        "  messages: [{role: user, content: Review this diff}]\n"
        "  expect: {route: code_review, model: anthropic/claude-sonnet-4-5}\n", encoding="utf-8")
    for source in (config, bundle):
        assert main(["test", str(source), str(cases), "--model-dir", str(review_model)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "2 cases: 2 ok, 0 mismatches"


def test_low_confidence_fallback_from_the_real_router(scripted_router_model: Callable[..., Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A hesitant model (low logit) under routing.confidence_threshold: the router's own fallback."""
    hesitant = scripted_router_model('{"route": "code_review"}', logit=2.0)
    config = tmp_path / "threshold.yaml"
    config.write_text(CONFIG.read_text(encoding="utf-8") + "\nrouting:\n  confidence_threshold: 0.9\n", encoding="utf-8")
    cases = tmp_path / "hesitant.yaml"
    cases.write_text(
        "- id: unsure-review\n"
        "  messages: [{role: user, content: Review this diff}]\n"
        "  expect: {fallback: low_confidence, model: openai/gpt-4o-mini}\n", encoding="utf-8")
    assert main(["test", str(config), str(cases), "--model-dir", str(hesitant), "--format", "json"]) == 0
    (case,) = json.loads(capsys.readouterr().out)["cases"]
    assert case["ok"] and 0 < case["confidence"] < 0.9


def test_malformed_golden_file_prints_positions_and_junit_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.xml"
    bad = FIX / "invalid" / "route_and_fallback.yaml"
    assert main(["test", str(CONFIG), str(bad), "--junit", str(report)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:5:3: G501 error: expect: give `route` or `fallback`, not both" in err
    xml = junitparser.JUnitXml.fromfile(str(report))
    assert (xml.tests, xml.errors) == (1, 1)
    assert main(["test", str(CONFIG), str(bad), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(d["code"], d["line"], d["col"]) for d in doc["diagnostics"]] == [("G501", 5, 3)]


def test_bad_config_and_missing_golden_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: v0.1.0\nllm_providers: [\n", encoding="utf-8")
    assert main(["test", str(broken), str(CASES)]) == 1
    assert f"{broken}:" in capsys.readouterr().err
    assert main(["test", str(CONFIG), str(tmp_path / "nope")]) == 2
    assert "no such golden file or folder" in capsys.readouterr().err
    assert main(["test", str(CONFIG), str(CASES), "--case", "no-such-case"]) == 1
    assert "no golden cases found with id no-such-case" in capsys.readouterr().err


def test_conversation_the_gateway_would_refuse_is_shown_not_crashed(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "refused.yaml"
    original = (
        "- id: block-without-text\n"
        "  format: anthropic_messages\n"
        "  messages:\n"
        "  - role: user\n"
        "    content:\n"
        "    - type: text\n"
        "  expect: {model: openai/gpt-4o-mini}\n")
    cases.write_text(original, encoding="utf-8")
    assert main(["test", str(CONFIG), str(cases), "--update"]) == 1
    out, err = capsys.readouterr()
    row = _row(out, "block-without-text")
    assert row[0] == "FAIL" and row[3].startswith("error=invalid_request_error")
    assert "messages[0].content[0].text" in out
    assert "not updated: the gateway would refuse it" in err
    assert cases.read_text(encoding="utf-8") == original


def test_unwritable_junit_path_fails_clearly(review_model: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert main(["test", str(CONFIG), str(CASES), "--model-dir", str(review_model),
                 "--junit", str(blocker / "report.xml")]) == 1
    assert "cannot write JUnit report" in capsys.readouterr().err


def test_archc_test_as_a_process(review_model: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "archc", "test", str(CONFIG), str(CASES), "--model-dir", str(review_model)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "3 cases: 3 ok, 0 mismatches"
    assert proc.stderr == ""
