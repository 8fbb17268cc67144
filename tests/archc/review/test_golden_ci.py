"""examples/ci/: the shell recipe run for real in a throwaway git repo (main branch + a PR branch),
and the GitHub Actions workflow's archc command lines checked against the real argument parser."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import junitparser
import pytest
from ruamel.yaml import YAML

from archc.cli import build_parser

REPO = Path(__file__).resolve().parents[3]
CI = REPO / "examples" / "ci"
FIX = REPO / "tests" / "fixtures" / "golden"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pr_repo(tmp_path: Path) -> Path:
    """main: routing.yaml as config.yaml + archc.lock + golden cases; branch `pr`: code_review retargeted."""
    repo = tmp_path / "gateway"
    (repo / "golden").mkdir(parents=True)
    shutil.copyfile(FIX / "configs" / "routing.yaml", repo / "config.yaml")
    shutil.copyfile(FIX / "e2e" / "cases.yaml", repo / "golden" / "cases.yaml")
    # Writes archc.lock beside the config (the bundle goes to stdout and is dropped).
    subprocess.run([sys.executable, "-m", "archc", "build", "config.yaml", "-o", "-"], cwd=repo, check=True,
                   capture_output=True, timeout=120)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "main")
    _git(repo, "checkout", "-q", "-b", "pr")
    shutil.copyfile(FIX / "configs" / "routing_retargeted.yaml", repo / "config.yaml")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-am", "retarget code_review")
    return repo


def _run_recipe(repo: Path, model_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHC_", "GITHUB_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", ARCHC_BASE_REF="main",
               ARCHC_MODEL_DIR=str(model_dir), ARCHC_FORMAT="text")
    return subprocess.run(["bash", str(CI / "routing-review.sh")], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)


def test_shell_recipe_shows_the_impact_and_fails_until_golden_is_updated(
        pr_repo: Path, scripted_router_model: Callable[..., Path]) -> None:
    model = scripted_router_model('{"route": "code_review"}')
    first = _run_recipe(pr_repo, model)
    assert first.returncode == 1, first.stdout + first.stderr
    impact = (pr_repo / "archc-reports" / "impact.md").read_text(encoding="utf-8")
    assert "### Routing impact" in impact
    assert "**3 of 3 golden conversations change route or model.**" in impact
    assert "| `golden/cases.yaml` · `review-openai` | `code_review` | `anthropic/claude-sonnet-4-5` → **`openai/gpt-4o`** |" in impact
    assert "golden routing cases do not match" in first.stderr
    xml = junitparser.JUnitXml.fromfile(str(pr_repo / "archc-reports" / "golden.xml"))
    assert (xml.tests, xml.failures) == (3, 2)  # alias-overridden expects only the route, which holds
    assert "archc check found errors" not in first.stderr and "build --locked failed" not in first.stderr

    # The author accepts the new decisions; the recipe passes and still shows the change against main.
    subprocess.run([sys.executable, "-m", "archc", "test", "config.yaml", "golden", "--model-dir", str(model), "--update"],
                   cwd=pr_repo, check=True, capture_output=True, timeout=120)
    second = _run_recipe(pr_repo, model)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "3 of 3 golden conversations change" in (pr_repo / "archc-reports" / "impact.md").read_text(encoding="utf-8")
    assert "3 cases: 3 ok, 0 mismatches" in second.stdout
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=pr_repo, capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1  # the base checkout was cleaned up


def test_shell_recipe_fails_when_the_lock_is_stale(pr_repo: Path, scripted_router_model: Callable[..., Path]) -> None:
    text = (pr_repo / "config.yaml").read_text(encoding="utf-8").replace("arch.chat.v1:\n    target: openai/gpt-4o-mini",
                                                                         "arch.chat.v1:\n    target: openai/gpt-4o")
    (pr_repo / "config.yaml").write_text(text, encoding="utf-8")
    result = _run_recipe(pr_repo, scripted_router_model('{"route": "code_review"}'))
    assert result.returncode == 1
    assert "archc build --locked failed" in result.stderr


def _archc_commands(script: str) -> list[list[str]]:
    """The archc invocations in a shell snippet, continuation lines joined, variables filled in."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        line = line.strip()
        match = re.search(r"(?:^|\$\()archc (.*)", line)
        if line.startswith("#") or not match:
            continue
        rest = re.split(r"\s(?:\|\||>|2>)|\)", match.group(1))[0]
        rest = re.sub(r"\$\{[A-Za-z_]+:\+[^}]*\}", "", rest)  # ${VAR:+--flag "$VAR"}: optional flags
        rest = re.sub(r"\$\{[A-Za-z_]+\[@\]\}", "x", rest)  # "${array[@]}"
        # $fmt is the recipe's --format value: github on Actions, text elsewhere.
        commands.append([re.sub(r"\$\{?([A-Za-z_]+)\}?", lambda m: "github" if m.group(1) == "fmt" else "x", w)
                         for w in shlex.split(rest)])
    return commands


def test_workflow_steps_call_real_archc_commands() -> None:
    workflow = YAML(typ="safe").load((CI / "routing-review.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["routing-review"]["steps"]
    uses = {s["uses"].split("@")[0] for s in steps if "uses" in s}
    assert {"actions/checkout", "actions/cache", "actions/upload-artifact"} <= uses
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "${{ env.ARCHC_MODEL_CACHE }}"
    commands = [c for s in steps if "run" in s for c in _archc_commands(s["run"])]
    assert [c[0] for c in commands] == ["model", "model", "check", "build", "diff", "test"]
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # SystemExit (a failed test) on an unknown command or flag
        assert args.handler is not None
    diff = next(c for c in commands if c[0] == "diff")
    assert "--impact" in diff and "markdown" in diff
    assert "--locked" in next(c for c in commands if c[0] == "build")
    assert "--junit" in next(c for c in commands if c[0] == "test")


def test_shell_recipe_calls_real_archc_commands() -> None:
    script = (CI / "routing-review.sh").read_text(encoding="utf-8").replace("$archc ", "archc ")
    commands = _archc_commands(script)
    assert [c[0] for c in commands] == ["model", "model", "check", "build", "diff", "test"]
    parser = build_parser()
    for argv in commands:
        assert parser.parse_args(argv).handler is not None
    assert "--locked" in next(c for c in commands if c[0] == "build")
