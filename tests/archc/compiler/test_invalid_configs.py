"""Every broken config in tests/fixtures/configs/invalid/ fails with the expected code at the expected place."""

import json
from pathlib import Path

import pytest

from archc.compiler import compile_path
from archc.diagnostics import CODES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "configs"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))


def test_fixture_folder_has_at_least_40_cases() -> None:
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_config(path: Path) -> None:
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    result = compile_path(path, lock_mode="ignore")
    assert not result.ok and result.bundle is None
    found = [(d.code, d.span.line, d.span.col) for d in result.diagnostics if d.is_error]
    assert (expected["code"], expected["line"], expected["col"]) in found, found
    assert len(set(result.diagnostics)) == len(result.diagnostics), "duplicate diagnostics"
    for d in result.diagnostics:
        assert d.span.file == str(path)
        assert d.message and d.span.line >= 1 and d.code in CODES


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_config(path: Path) -> None:
    result = compile_path(path, lock_mode="ignore")
    assert result.ok, [d.to_dict() for d in result.diagnostics]
    expected_file = path.with_suffix(".expected.json")
    if expected_file.exists():
        expected = json.loads(expected_file.read_text())
        warnings = sorted((d.code, d.span.line) for d in result.diagnostics if not d.is_error)
        assert warnings == sorted((w["code"], w["line"]) for w in expected["warnings"])
