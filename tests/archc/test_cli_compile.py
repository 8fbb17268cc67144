"""archc check/build/diff/explain as a real process: output formats and documented exit codes."""

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from archc.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GOOD = """version: v0.3.0
listeners: [{type: model, name: llm}]
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
    default: true
  - model: openai/o3
    access_key: $OPENAI_API_KEY
model_aliases:
  arch.fast.v1: {target: gpt-4o}
"""


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def process(*args: str) -> Ran:
    """The real console entry point in a child process."""
    env = {**os.environ, "NO_COLOR": "1"}
    res = subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=60)
    return Ran(res.returncode, res.stdout, res.stderr)


def archc(*args: str) -> Ran:
    """``archc.cli.main`` in-process (same code path, without the interpreter start-up per call)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    texts = []
    for stream in (out, err):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("utf-8"))
    return Ran(code, *texts)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    return path


def test_check_ok_and_errors(config: Path, tmp_path: Path) -> None:
    ok = archc("check", str(config))
    assert ok.returncode == 0 and "ok (2 providers, 1 aliases, 0 routes)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("access_key: $OPENAI_API_KEY\n    default", "acess_key: $OPENAI_API_KEY\n    default"))
    res = archc("check", str(bad))
    assert res.returncode == 1
    assert f"{bad}:5:5: V201 error: unknown key 'acess_key'" in res.stdout and "did you mean 'access_key'?" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_check_formats(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: v0.3.0\nlisteners: [{type: modle, name: x}]\n")
    doc = json.loads(archc("check", str(bad), "--format", "json").stdout)
    assert doc["ok"] is False and doc["diagnostics"][0]["code"] == "V204" and doc["diagnostics"][0]["line"] == 2
    gh = archc("check", str(bad), "--format", "github").stdout
    assert gh.startswith(f"::error file={bad},line=2,")


def test_usage_errors_exit_2(config: Path) -> None:
    assert process().returncode == 2
    assert archc("check").returncode == 2
    assert archc("build", str(config), "--locked", "--no-lock").returncode == 2
    assert archc("explain", str(config)).returncode == 2


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe junk", b"a: [\n", b"- 1\n", b"{{{{"])
def test_no_traceback_for_junk(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(content)
    res = process("check", str(path))
    assert res.returncode == 1 and "Traceback" not in res.stderr and "error" in res.stdout


def test_missing_file(tmp_path: Path) -> None:
    res = archc("check", str(tmp_path / "none.yaml"))
    assert res.returncode == 1 and "L101" in res.stdout


def test_build_writes_bundle_and_lock_then_locked(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    res = archc("build", str(config), "-o", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(out.read_bytes())["aliases"][0]["target"] == "openai/gpt-4o"
    assert (tmp_path / "archc.lock").exists()
    assert archc("build", str(config), "-o", str(out), "--locked").returncode == 0
    config.write_text(GOOD.replace("arch.fast.v1: {target: gpt-4o}", "arch.fast.v1: {target: o3}"))
    res = archc("build", str(config), "-o", str(out))
    assert res.returncode == 1 and "R308" in res.stdout and "arch.fast.v2" in res.stdout
    assert archc("build", str(config), "-o", str(out), "--repin", "arch.fast.v1").returncode == 0


def test_build_to_stdout_is_canonical(config: Path) -> None:
    res = process("build", str(config), "-o", "-", "--no-lock")
    assert res.returncode == 0 and res.stdout.endswith("\n")
    data = json.loads(res.stdout)
    assert res.stdout == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def test_diff_exit_codes_and_bundles(config: Path, tmp_path: Path) -> None:
    old_bundle = tmp_path / "old.json"
    archc("build", str(config), "-o", str(old_bundle), "--no-lock")
    same = archc("diff", str(config), str(old_bundle))
    assert same.returncode == 0 and "no semantic changes" in same.stdout
    changed = tmp_path / "changed.yaml"
    changed.write_text(GOOD + "  arch.fast.v2: {target: o3}\n")
    res = archc("diff", str(old_bundle), str(changed), "--format", "markdown")
    assert res.returncode == 3 and "alias `arch.fast.v2`" in res.stdout
    breaking = tmp_path / "breaking.yaml"
    breaking.write_text(GOOD.replace("arch.fast.v1: {target: gpt-4o}", "arch.fast.v1: {target: o3}"))
    res = archc("diff", str(config), str(breaking), "--format", "json")
    assert res.returncode == 4 and json.loads(res.stdout)["breaking"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [\n")
    assert archc("diff", str(config), str(bad)).returncode == 1


def test_diff_accepts_impact_flags(config: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    golden.mkdir()
    res = archc("diff", str(config), str(config), "--impact", str(golden), "--model-dir", str(tmp_path))
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr
    assert "unrecognized arguments" not in res.stderr


def test_explain(config: Path) -> None:
    res = archc("explain", str(config), "--model", "arch.fast.v1")
    assert res.returncode == 0 and "arch.fast.v1 -> openai/gpt-4o" in res.stdout
    assert "POST https://api.openai.com/v1/chat/completions" in res.stdout
    res = archc("explain", str(config), "--model", "arch.fats.v1", "--format", "json")
    assert res.returncode == 1 and json.loads(res.stdout)["suggestions"] == ["arch.fast.v1"]


def test_corrupt_bundle_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text('{"format_version": 1, "digest": "sha256:00"}')
    res = archc("explain", str(path), "--model", "x")
    assert res.returncode == 1 and "E403" in res.stderr


def test_diff_shows_pinned_retarget_even_with_a_lock(config: Path, tmp_path: Path) -> None:
    assert archc("build", str(config), "-o", str(tmp_path / "b.json")).returncode == 0  # writes archc.lock
    new = tmp_path / "new.yaml"
    new.write_text(GOOD.replace("arch.fast.v1: {target: gpt-4o}", "arch.fast.v1: {target: o3}"))
    assert archc("check", str(new)).returncode == 1  # the lock refuses it...
    res = archc("diff", str(config), str(new))
    assert res.returncode == 4 and "[BREAKING]" in res.stdout  # ...and diff says why


def test_check_accepts_a_bundle(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    archc("build", str(config), "-o", str(out), "--no-lock")
    res = archc("check", str(out))
    assert res.returncode == 0 and "bundle ok (sha256:" in res.stdout
    out.write_text(out.read_text().replace("gpt-4o", "gpt-4x"))
    res = archc("check", str(out), "--format", "json")
    assert res.returncode == 1 and json.loads(res.stdout)["diagnostics"][0]["code"] == "E403"


WRONG_UNIT = GOOD + """ratelimits:
  - {model: openai/gpt-4o, selector: {key: team, value: a}, limit: {tokens: 10, unit: [minute]}}
  - {model: openai/gpt-4o, selector: {key: team, value: b}, limit: {tokens: 10, unit: {minute: 1}}}
"""


def test_a_value_of_the_wrong_type_is_a_positioned_diagnostic_not_an_internal_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(WRONG_UNIT)
    ran = archc("check", str(path), "--format", "json")
    assert ran.returncode == 1 and ran.stderr == ""
    found = [(d["code"], d["line"], d["message"]) for d in json.loads(ran.stdout)["diagnostics"]]
    assert found == [("V203", 12, "ratelimits[0].limit.unit must be a string, not a list"),
                     ("V203", 13, "ratelimits[1].limit.unit must be a string, not a mapping")]
    served = process("serve", str(path), "--port", "1")  # never gets to listen: the config does not compile
    assert served.returncode == 1 and "Traceback" not in served.stderr
    assert "ratelimits[0].limit.unit must be a string, not a list" in served.stderr


LONE_SURROGATES = GOOD.replace("    default: true\n", '    default: true\n    "bogus\\ud800": 1\n    "x\\ud83d\\ude00": 2\n')


@pytest.mark.parametrize("fmt", ["json", "text", "github"])
@pytest.mark.parametrize("env", [{}, {"LANG": "C", "LC_ALL": "C"}, {"PYTHONIOENCODING": "ascii"}], ids=["utf8", "C", "ascii"])
def test_reports_survive_lone_surrogates_in_any_locale(tmp_path: Path, fmt: str, env: dict) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(LONE_SURROGATES)
    ran = subprocess.run([sys.executable, "-m", "archc", "check", str(path), "--format", fmt], capture_output=True,
                         env={**os.environ, "NO_COLOR": "1", **env}, cwd=REPO)
    assert ran.returncode == 1 and b"internal error" not in ran.stderr and b"Traceback" not in ran.stderr
    out = ran.stdout + ran.stderr
    if fmt == "json":
        keys = [d["path"] for d in json.loads(ran.stdout)["diagnostics"]]
        # JSON escapes them; a reader joins the escaped halves of a pair back into one character.
        assert keys == ["model_providers[0].bogus\ud800", "model_providers[0].x\U0001f600"]
    else:
        assert b"unknown key 'bogus\\ud800'" in out and b"\\ud83d\\ude00" in out
