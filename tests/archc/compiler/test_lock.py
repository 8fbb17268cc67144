"""archc.lock: pinning versioned aliases, retarget refusal, --repin, --locked, malformed locks."""

from pathlib import Path

import pytest

from archc.compiler import compile_path
from archc.compiler.lock import read_lock, render_lock

CONFIG = """version: v0.3.0
listeners: [{{type: model, name: llm}}]
model_providers:
  - model: openai/gpt-4o-mini
  - model: openai/o3
model_aliases:
  arch.summarize.v1:
    target: {target}
  floating-name:
    target: o3
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(target="gpt-4o-mini"))
    return path


def test_build_writes_sorted_lock_with_header(config: Path) -> None:
    result = compile_path(config)
    assert result.ok and result.lock_written
    lock = config.parent / "archc.lock"
    text = lock.read_text()
    assert text.startswith("# archc.lock") and text == render_lock({"arch.summarize.v1": "openai/gpt-4o-mini"})
    assert "floating-name" not in text  # floating aliases are not pinned
    assert read_lock(lock) == ({"arch.summarize.v1": "openai/gpt-4o-mini"}, [])
    again = compile_path(config)
    assert again.ok and not again.lock_written


def test_retarget_of_pinned_version_fails_with_names_and_hint(config: Path) -> None:
    compile_path(config)
    config.write_text(CONFIG.format(target="o3"))
    result = compile_path(config)
    assert not result.ok
    (d,) = [d for d in result.diagnostics if d.code == "R308"]
    assert "arch.summarize.v1" in d.message and "openai/gpt-4o-mini" in d.message and "openai/o3" in d.message
    assert "arch.summarize.v2" in d.hint and "--repin arch.summarize.v1" in d.hint
    assert d.span.line == 7
    # read mode (serve/check) also refuses, and never writes
    assert not compile_path(config, lock_mode="read").ok
    # explicit repin moves it
    moved = compile_path(config, repin=("arch.summarize.v1",))
    assert moved.ok and moved.lock_written
    assert read_lock(config.parent / "archc.lock")[0] == {"arch.summarize.v1": "openai/o3"}


def test_new_versions_are_added_and_old_entries_kept(config: Path) -> None:
    compile_path(config)
    config.write_text(CONFIG.format(target="gpt-4o-mini").replace("arch.summarize.v1", "arch.summarize.v2"))
    result = compile_path(config)
    assert result.ok
    assert read_lock(config.parent / "archc.lock")[0] == {
        "arch.summarize.v1": "openai/gpt-4o-mini", "arch.summarize.v2": "openai/gpt-4o-mini"}


def test_locked_fails_on_any_change(config: Path) -> None:
    missing = compile_path(config, lock_mode="locked")
    assert [d.code for d in missing.diagnostics if d.is_error] == ["R309"]
    assert not (config.parent / "archc.lock").exists()
    compile_path(config)
    assert compile_path(config, lock_mode="locked").ok
    config.write_text(CONFIG.format(target="gpt-4o-mini") + "  arch.new.v1:\n    target: o3\n")
    locked = compile_path(config, lock_mode="locked")
    assert [d.code for d in locked.diagnostics if d.is_error] == ["R309"]


def test_read_mode_never_writes(config: Path) -> None:
    assert compile_path(config, lock_mode="read").ok
    assert not (config.parent / "archc.lock").exists()


def test_repin_unknown_alias(config: Path) -> None:
    result = compile_path(config, repin=("arch.nope.v1",))
    assert [d.code for d in result.diagnostics if d.is_error] == ["R305"]


@pytest.mark.parametrize("text,line", [
    ("version: 2\naliases: {}\n", 1),
    ("version: 1\naliases: [a, b]\n", 2),
    ("version: 1\naliases:\n  a.v1: [x]\n", 3),
    ("version: 1\nextra: true\n", 2),
    ("version: 1\naliases: {a: 1\n", 3),
])
def test_malformed_lock(config: Path, text: str, line: int) -> None:
    (config.parent / "archc.lock").write_text(text)
    result = compile_path(config)
    errors = [(d.code, d.span.line) for d in result.diagnostics if d.is_error]
    assert errors and errors[0][0] == "R314" and errors[0][1] == line
