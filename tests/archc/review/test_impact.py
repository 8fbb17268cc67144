"""archc.review.impact and `archc diff OLD NEW --impact`: config changes that flip golden decisions, end to
end with scripted tiny CTranslate2 router models (real conversion and decoding path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from archc.cli import main
from archc.compiler import bundle_from_path
from archc.diagnostics import CompileError
from archc.cli.replay import open_replay
from archc.review.impact import impact_report

REPO = Path(__file__).resolve().parents[3]
FIX = REPO / "tests" / "fixtures" / "golden"
CONFIGS = FIX / "configs"
CASES = FIX / "e2e" / "cases.yaml"
REVIEW = '{"route": "code_review"}'


@pytest.fixture(scope="module")
def review_model(scripted_router_model: Callable[..., Path]) -> Path:
    return scripted_router_model(REVIEW)


def _bundle(name: str):
    return bundle_from_path(CONFIGS / f"{name}.yaml")


def test_retargeted_route_shows_every_changed_model_in_markdown(review_model: Path) -> None:
    text, changed = impact_report(_bundle("routing"), _bundle("routing_retargeted"), [CASES], open_replay=open_replay,
                                  model_dir=review_model, fmt="markdown")
    assert changed
    lines = text.splitlines()
    assert lines[:2] == ["", "### Routing impact"]
    assert "**3 of 3 golden conversations change route or model.**" in lines
    assert "| case | route | model |" in lines
    for case_id in ("review-openai", "review-anthropic", "alias-overridden"):
        row = f"| `{CASES}` · `{case_id}` | `code_review` | `anthropic/claude-sonnet-4-5` → **`openai/gpt-4o`** |"
        assert row in lines


def test_removed_route_falls_back_and_the_json_says_so(review_model: Path) -> None:
    text, changed = impact_report(_bundle("routing"), _bundle("routing_removed"), [CASES], open_replay=open_replay,
                                  model_dir=review_model, fmt="json")
    assert changed
    doc = json.loads(text)
    assert (doc["changed"], doc["total"]) == (3, 3)
    by_id = {c["id"]: c for c in doc["changes"]}
    review = by_id["review-openai"]
    assert review["before"] == {"route": "code_review", "fallback": None, "model": "anthropic/claude-sonnet-4-5", "error": None}
    # The router still answers code_review, which the new config no longer has: no_match, default model.
    assert review["after"] == {"route": None, "fallback": "no_match", "model": "openai/gpt-4o-mini", "error": None}
    # The requested alias is kept when no route matches.
    assert by_id["alias-overridden"]["after"]["model"] == "openai/gpt-4o-mini"
    assert doc["shift"] == {"anthropic/claude-sonnet-4-5": -3, "openai/gpt-4o-mini": 3}
    assert review["line"] == 4 and review["file"] == str(CASES)


def test_long_impact_tables_are_capped_in_markdown_only(review_model: Path, tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"
    many.write_text("".join(
        f"- id: review-{i}\n  messages: [{{role: user, content: review {i}}}]\n  expect: {{route: code_review}}\n"
        for i in range(60)), encoding="utf-8")
    md, changed = impact_report(_bundle("routing"), _bundle("routing_retargeted"), [many], open_replay=open_replay, model_dir=review_model,
                                fmt="markdown")
    assert changed and "**60 of 60 golden conversations change route or model.**" in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 50 and "| … and 10 more | | |" in md
    assert "Net shift of golden conversations per model: `openai/gpt-4o` +60, `anthropic/claude-sonnet-4-5` -60." in md
    text, _ = impact_report(_bundle("routing"), _bundle("routing_retargeted"), [many], open_replay=open_replay, model_dir=review_model, fmt="text")
    assert sum(1 for line in text.splitlines() if "review-" in line) == 60


def test_one_word_in_a_route_description_moves_traffic(branching_router_model: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's motivating case, with a router model whose answer depends on the prompt: it
    names code_review when the prompt holds the word "bugs" (conversation or route descriptions),
    else code_generation. Editing one word of a description (problems -> bugs) flips a decision."""
    before, after = CONFIGS / "description_before.yaml", CONFIGS / "description_after.yaml"
    cases = FIX / "impact" / "coding.yaml"
    assert main(["test", str(before), str(cases), "--model-dir", str(branching_router_model)]) == 0
    capsys.readouterr()
    code = main(["diff", str(before), str(after), "--format", "markdown", "--impact", str(cases),
                 "--model-dir", str(branching_router_model)])
    out = capsys.readouterr().out
    assert code == 3
    assert "**1 of 2 golden conversations change route or model.**" in out
    assert (f"| `{cases}` · `sort-function` | `code_generation` → **`code_review`** "
            "| `openai/gpt-4o` → **`anthropic/claude-sonnet-4-5`** |") in out
    assert "review-for-bugs" not in out  # already code_review: unchanged
    # The golden file now fails against the new config, until the change is accepted.
    assert main(["test", str(after), str(cases), "--model-dir", str(branching_router_model)]) == 1


def test_unchanged_config_reports_no_change(review_model: Path) -> None:
    text, changed = impact_report(_bundle("routing"), _bundle("routing"), [CASES], open_replay=open_replay, model_dir=review_model, fmt="text")
    assert not changed
    assert text == "routing impact: no routing change: all 3 golden conversations keep their route and model\n"


def test_text_and_github_formats_point_at_the_golden_lines(review_model: Path) -> None:
    text, _ = impact_report(_bundle("routing"), _bundle("routing_removed"), [CASES], open_replay=open_replay, model_dir=review_model, fmt="github")
    notices = [line for line in text.splitlines() if line.startswith("::notice ")]
    # The path holds no ':' or ',', which workflow commands would escape.
    assert [n.split(",")[0:2] for n in notices] == [[f"::notice file={CASES}", f"line={n}"] for n in (4, 12, 25)]
    assert all("routing impact on" in n and "code_review -> (no_match)" in n for n in notices)
    assert f"{CASES}:4   review-openai     code_review -> (no_match)" in text


def test_missing_router_model_is_a_diagnostic_not_a_silent_pass(tmp_path: Path) -> None:
    with pytest.raises(CompileError) as info:
        impact_report(_bundle("routing"), _bundle("routing_retargeted"), [CASES], open_replay=open_replay, model_dir=tmp_path / "none", fmt="text")
    (diag,) = info.value.diagnostics
    assert diag.code == "G504" and "not available" in diag.message


def test_no_model_needed_when_neither_config_asks_the_router(tmp_path: Path) -> None:
    aliases = bundle_from_path(REPO / "examples" / "aliases.yaml")
    text, changed = impact_report(aliases, aliases, [REPO / "golden" / "aliases.yaml"], open_replay=open_replay, model_dir=tmp_path / "none")
    assert not changed and "keep their route and model" in text


def test_malformed_golden_file_is_reported_with_its_position(review_model: Path) -> None:
    with pytest.raises(CompileError) as info:
        impact_report(_bundle("routing"), _bundle("routing_removed"), [FIX / "invalid" / "duplicate_id.yaml"], open_replay=open_replay,
                      model_dir=review_model, fmt="text")
    assert [(d.code, d.span.line, d.span.col) for d in info.value.diagnostics] == [("G502", 8, 3)]


def test_archc_diff_impact_cli_exit_codes_and_markdown(review_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = str(CONFIGS / "routing.yaml"), str(CONFIGS / "routing_retargeted.yaml")
    code = main(["diff", old, new, "--format", "markdown", "--impact", str(CASES), "--model-dir", str(review_model)])
    out = capsys.readouterr().out
    assert code != 0  # the config changed
    assert "### Routing impact" in out
    assert "`anthropic/claude-sonnet-4-5` → **`openai/gpt-4o`**" in out
    # A config that does not change: exit 0, and the impact section says so.
    assert main(["diff", old, old, "--impact", str(CASES), "--model-dir", str(review_model)]) == 0
    assert "no routing change" in capsys.readouterr().out


def test_archc_diff_json_with_impact_is_one_document(review_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", str(CONFIGS / "routing.yaml"), str(CONFIGS / "routing_removed.yaml"), "--format", "json",
                 "--impact", str(CASES), "--model-dir", str(review_model)])
    doc = json.loads(capsys.readouterr().out)
    assert code == doc["exit_code"] == 3
    assert [c["subject"] for c in doc["changes"]] == ["code_review"]  # the semantic diff
    assert doc["impact"]["changed"] == 3 and doc["impact"]["total"] == 3


def test_archc_diff_impact_process_without_model_fails_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "archc", "diff", str(CONFIGS / "routing.yaml"), str(CONFIGS / "routing_removed.yaml"),
         "--impact", str(CASES), "--model-dir", str(tmp_path / "absent")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "G504" in proc.stderr and "not available" in proc.stderr
