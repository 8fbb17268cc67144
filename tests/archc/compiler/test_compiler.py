"""The API edge other commands use: compile_path (lock modes) and bundle_from_path (config or bundle)."""

import json
from pathlib import Path

import pytest

from archc.compiler import CompileError, bundle_from_path, compile_path, is_bundle_bytes

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_bundle_from_config_and_from_bundle_agree(tmp_path: Path) -> None:
    from_config = bundle_from_path(EXAMPLES / "aliases.yaml")
    path = tmp_path / "aliases.bundle.json"
    path.write_bytes(from_config.to_bytes())
    assert is_bundle_bytes(path.read_bytes())
    assert bundle_from_path(path).digest == from_config.digest


def test_json_config_is_compiled_as_a_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"version": "v0.3.0", "listeners": [{"type": "model", "name": "llm"}],
                                "model_providers": [{"model": "echo/x", "default": True}]}))
    assert not is_bundle_bytes(path.read_bytes())
    assert bundle_from_path(path).default_model == "echo/x"


def test_compile_error_lists_every_problem_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: v0.3.0\nlisteners: [{type: model, name: llm}]\nmodel_providers:\n"
                    "  - model: gpt-4o\n  - model: openai/o3\n    acess_key: $K\n")
    with pytest.raises(CompileError) as info:
        bundle_from_path(path)
    codes = sorted((d.code, d.span.line) for d in info.value.diagnostics)
    assert codes == [("R301", 4), ("V201", 6)]
    assert f"{path}:4:12: R301 error" in str(info.value)


def test_corrupt_bundle_raises_compile_error(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    data = json.loads(bundle_from_path(EXAMPLES / "aliases.yaml").to_bytes())
    data["default_model"] = "openai/o3"  # edited by hand: the digest no longer matches
    path.write_text(json.dumps(data))
    with pytest.raises(CompileError) as info:
        bundle_from_path(path)
    assert [d.code for d in info.value.diagnostics] == ["E403"]
    with pytest.raises(CompileError):
        bundle_from_path(tmp_path / "missing.yaml")


def test_lock_modes(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text((EXAMPLES / "aliases.yaml").read_text())
    with pytest.raises(ValueError):
        compile_path(config, lock_mode="sometimes")
    with pytest.raises(ValueError):
        bundle_from_path(config, lock_mode="write")
    assert compile_path(config, lock_mode="ignore").lock_path is None
    assert not (tmp_path / "archc.lock").exists()
    bundle_from_path(config)  # read: never writes
    assert not (tmp_path / "archc.lock").exists()
    result = compile_path(config)
    assert result.lock_written and result.lock_path == tmp_path / "archc.lock"
