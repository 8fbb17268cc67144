"""An open listener is a spent budget: `archc serve` on a non-loopback address without gateway keys
refuses to start unless told explicitly (config or flag), and then says so in one WARNING line."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from runtime.guard.auth import exposure, is_loopback
from tests.support.gateway import free_port

pytestmark = pytest.mark.e2e

CONFIG = ("version: v0.3.0\nlisteners:\n  - {type: model, name: llm}\nmodel_providers:\n"
          "  - {model: echo/x, default: true}\n")


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
                                           ("localhost", True), ("0.0.0.0", False), ("::", False),
                                           ("10.0.0.5", False), ("gateway.corp", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_rules() -> None:
    assert exposure("127.0.0.1", 1, None, False) == (None, None)
    refusal, _ = exposure("0.0.0.0", 8080, None, False)
    assert refusal and "0.0.0.0:8080" in refusal and "gateway.require_keys: false" in refusal
    assert exposure("0.0.0.0", 1, {"keys": [{"name": "a", "key_env": "K"}]}, False) == (None, None)
    _, warning = exposure("0.0.0.0", 1, {"require_keys": False}, False)
    assert warning and "gateway.require_keys: false" in warning
    _, warning = exposure("0.0.0.0", 1, None, True)
    assert warning and "--allow-unauthenticated" in warning


def test_serve_refuses_an_open_listener(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    done = subprocess.run([sys.executable, "-m", "archc", "serve", str(config), "--host", "0.0.0.0", "--port",
                           str(free_port())], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0" in done.stderr and "Traceback" not in done.stderr


def test_serve_open_listener_when_told(tmp_path, start_gateway) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    gw = start_gateway(config, args=["--host", "0.0.0.0", "--allow-unauthenticated"])
    assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 200
    warnings = [line for line in gw.logs().splitlines() if "without gateway keys" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "anyone who can reach this port" in warnings[0]


def test_python_m_runtime_refuses_too(tmp_path) -> None:
    from archc.compiler import compile_source
    from tests.support.gateway import write_bundle
    bundle = write_bundle(tmp_path, compile_source(CONFIG, lock_mode="ignore").bundle)
    done = subprocess.run([sys.executable, "-m", "runtime", str(bundle), "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "python -m runtime: refusing to listen on 0.0.0.0" in done.stderr
