"""Deploy by digest: `archc serve --expect-digest` serves only that bundle (a process, over HTTP)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from archc.compiler import bundle_from_path
from tests.support.gateway import free_port

pytestmark = pytest.mark.e2e

CONFIG = ("version: v0.3.0\nlisteners:\n  - {type: model, name: llm}\nmodel_providers:\n"
          "  - {model: echo/x, default: true}\n")


def test_serve_refuses_another_digest_and_names_the_live_one(tmp_path, start_gateway) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    digest = bundle_from_path(config).digest
    wrong = "sha256:" + "0" * 64
    done = subprocess.run([sys.executable, "-m", "archc", "serve", str(config), "--port", str(free_port()),
                           "--expect-digest", wrong], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"is bundle {digest}, not the expected {wrong}; nothing served" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "archc", "serve", str(config), "--expect-digest", "latest"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "expected sha256: and 64 hex digits" in bad.stderr and "Traceback" not in bad.stderr
    gw = start_gateway(config, args=["--expect-digest", digest])
    assert httpx.get(gw.url + "/readyz", timeout=5).json()["bundle"] == digest
    assert f'archc_bundle_info{{digest="{digest}"}} 1.0' in httpx.get(gw.url + "/metrics", timeout=5).text
