"""The real Codex CLI (``.tools/node_modules/.bin/codex``, installed by ``make test``) in ``codex exec``
mode, its custom model provider pointed at a real `archc serve` process (``wire_api = "responses"``),
to an OpenAI-chat and an Anthropic fake upstream on 127.0.0.1: the upstream asks for Codex's shell
tool, Codex runs it, and the tool's output reaches the upstream as a tool message / tool_result."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, anthropic_text, anthropic_tool_use, openai_text, openai_tool_call
from tests.runtime.test_e2e_claude_routing import _decisions, write_config
from tests.support.agents import agent_bin
from tests.support.gateway import Gateway, bundle_dict, free_port, provider, write_bundle

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
COMMAND = "echo archc-$((6*7))"  # the output (archc-42) exists only if Codex really ran it


@pytest.fixture(scope="session")
def codex_bin() -> str:
    return agent_bin("codex", "@openai/codex")


def _run_codex(codex: str, gateway: Gateway, tmp_path: Path, model: str,
               prompt: str = "Run the command the model asks for.") -> subprocess.CompletedProcess[str]:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    provider_toml = f'{{name="archc", base_url="{gateway.url}/v1", wire_api="responses", env_key="ARCHC_CODEX_KEY"}}'
    cmd = [codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "-C", str(work),
           "-c", "model_provider=archc", "-c", f"model_providers.archc={provider_toml}", "-m", model, prompt]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home), "ARCHC_CODEX_KEY": "client-key"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("wire", ["openai_chat", "anthropic_messages"])
def test_codex_runs_a_shell_tool_through_the_gateway(codex_bin: str, tmp_path: Path, wire: str) -> None:
    with FakeUpstream() as up:
        if wire == "openai_chat":
            up.script(openai_tool_call("exec_command", {"cmd": COMMAND}, call_id="call_codex_1"), openai_text("It printed archc-42."))
            target = provider("openai/gpt-4o", up.openai_endpoint(), auth="bearer", key_env="UP_KEY", default=True)
        else:
            up.script(anthropic_tool_use("exec_command", {"cmd": COMMAND}, tool_id="call_codex_1"), anthropic_text("It printed archc-42."))
            target = provider("anthropic/claude-x", up.anthropic_endpoint(), wire="anthropic_messages", auth="x-api-key",
                              key_env="UP_KEY", default=True)
        bundle = write_bundle(tmp_path, bundle_dict([target], aliases={"arch.codex.v1": target["name"]}))
        with Gateway(bundle, env={"UP_KEY": "sk-upstream"}) as gateway:
            done = _run_codex(codex_bin, gateway, tmp_path, "arch.codex.v1")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "It printed archc-42." in done.stdout
        assert len(up.requests) == 2, [r.path for r in up.requests]
        first, second = (r.body for r in up.requests)
    assert first["stream"] is True
    if wire == "openai_chat":
        names = [t["function"]["name"] for t in first["tools"]]
        result = next(m for m in second["messages"] if m.get("role") == "tool")
        assert result["tool_call_id"] == "call_codex_1" and "archc-42" in result["content"]
    else:
        names = [t["name"] for t in first["tools"]]
        result = second["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == "call_codex_1"
        assert "archc-42" in str(result["content"])
    assert "exec_command" in names and "web_search" not in names  # Codex's built-in web search has no chat equivalent


def test_archc_codex_starts_a_gateway_and_codex_turns_are_routed(codex_bin: str, tmp_path: Path, fake_upstream: FakeUpstream,
                                                                  branching_router_model: Path) -> None:
    """`archc codex CONFIG -- exec ...` as a user runs it: it starts `archc serve` for the config, runs
    the real Codex against it, and stops the gateway after. The model Codex asks for (`archc`, the
    launcher's default) is not in the config, so each turn is routed: "bugs" in the conversation
    means the code_review route."""
    port = free_port()
    config = write_config(tmp_path, fake_upstream.url, port=port)
    fake_upstream.script(openai_tool_call("exec_command", {"cmd": COMMAND}, call_id="call_review_1"), openai_text("Reviewed."))
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {"PATH": f"{Path(codex_bin).parent}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home), "CODEX_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "archc", "codex", str(config), "--model-dir", str(branching_router_model),
                           "--", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "-C", str(work),
                           "Please find the bugs in main.py"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"started a gateway at http://127.0.0.1:{port}" in done.stderr and "Reviewed." in done.stdout
    turns = [r.body for r in fake_upstream.requests if isinstance(r.body, dict) and r.body.get("tools")]
    assert [t["model"] for t in turns] == ["gpt-review", "gpt-review"]
    assert any(m.get("role") == "tool" and "archc-42" in m["content"] for m in turns[1]["messages"])
    with pytest.raises(OSError):  # the gateway it started is gone
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_print_config_is_the_toml_codex_reads(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, "http://127.0.0.1:9/v1", port=port)
    done = subprocess.run([sys.executable, "-m", "archc", "codex", str(config), "--print-config"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    settings = tomllib.loads(done.stdout)
    assert settings["model_provider"] == "archc" and settings["model"] == "archc"
    assert settings["model_providers"]["archc"] == {"name": "archc", "base_url": f"http://127.0.0.1:{port}/v1",
                                                    "wire_api": "responses", "env_key": "ARCHC_GATEWAY_KEY"}
    with pytest.raises(OSError):  # --print-config starts nothing
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_codex_turn_runs_the_router_once(codex_bin: str, tmp_path: Path, fake_upstream: FakeUpstream,
                                           branching_router_model: Path, start_gateway: Any) -> None:
    """A Codex turn resends its history with each tool result: the router's input (its selection of
    the conversation) is the same, so the continuation is a decision-cache hit, as for Claude Code."""
    gateway = start_gateway(write_config(tmp_path, fake_upstream.url, port=free_port()),
                            args=["--model-dir", str(branching_router_model)])
    fake_upstream.script(openai_tool_call("exec_command", {"cmd": COMMAND}, call_id="call_t1"), openai_text("Found two bugs."))
    prompt = "Please find the bugs in main.py"
    done = _run_codex(codex_bin, gateway, tmp_path, "archc", prompt)
    assert done.returncode == 0, done.stderr[-3000:]
    turns = [r.body for r in fake_upstream.requests if isinstance(r.body, dict) and r.body.get("tools")]
    assert [t["model"] for t in turns] == ["gpt-review", "gpt-review"]
    metrics = httpx.get(gateway.url + "/metrics", timeout=5).text
    assert _decisions(metrics, "code_review", "miss") == 1.0 and _decisions(metrics, "code_review", "hit") == 1.0


def test_codex_with_its_own_model_name_is_passed_through_to_a_responses_upstream(codex_bin: str, tmp_path: Path) -> None:
    """Codex asking for its own model (``gpt-5-codex``, an alias here) sends its native request: built-in
    ``web_search``, a tool namespace, ``include``, ``prompt_cache_key``, ``client_metadata``. A provider
    with a Responses endpoint gets all of it unchanged (only ``model`` is the provider's), and Codex's
    shell tool output comes back as a ``function_call_output`` item."""
    with FakeUpstream() as up:
        up.script(openai_tool_call("exec_command", {"cmd": COMMAND}, call_id="call_native_1"), openai_text("It printed archc-42."))
        target = provider("openai/gpt-5.1-codex", up.openai_endpoint(), auth="bearer", key_env="UP_KEY", default=True,
                          responses_endpoint=up.responses_endpoint())
        bundle = write_bundle(tmp_path, bundle_dict([target], aliases={"gpt-5-codex": target["name"]}))
        with Gateway(bundle, env={"UP_KEY": "sk-upstream"}) as gateway:
            done = _run_codex(codex_bin, gateway, tmp_path, "gpt-5-codex")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "It printed archc-42." in done.stdout
        assert [r.path for r in up.requests] == ["/v1/responses", "/v1/responses"]
        first, second = (r.body for r in up.requests)
    assert first["model"] == second["model"] == "gpt-5.1-codex" and first["stream"] is True
    offered = {t.get("name") or t["type"] for t in first["tools"]}
    assert {"exec_command", "web_search"} <= offered and any(t["type"] == "namespace" for t in first["tools"])
    assert {"include", "prompt_cache_key", "client_metadata"} <= set(first)
    result = next(i for i in second["input"] if i.get("type") == "function_call_output")
    assert result["call_id"] == "call_native_1" and "archc-42" in str(result["output"])
