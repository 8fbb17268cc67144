"""Where the real agent CLIs are: ``make tools`` installs them into .tools/ (npm)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def agent_bin(name: str, package: str) -> str:
    """The ``name`` command from .tools/node_modules/.bin, else PATH. Missing: a failure in CI (the
    tests need the real client), else a skip that says how to install it."""
    local = REPO / ".tools" / "node_modules" / ".bin" / name
    found = str(local) if local.exists() else shutil.which(name)
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{name} is required in CI: `make tools` installs it into .tools/ (npm install {package})")
    pytest.skip(f"{name} is not installed (run `make tools`, which installs it into .tools/: npm install {package})")
