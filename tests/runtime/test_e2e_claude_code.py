"""Claude Code itself, through `archc serve`, to an OpenAI-format fake upstream: a Bash tool call round trip.

Claude Code (``.tools/node_modules/.bin/claude``, installed by ``make test``) runs offline with
``ANTHROPIC_BASE_URL`` pointing at the gateway. The fake upstream answers the main conversation
with a Bash tool call, then, seeing the tool result, with text; side requests (title generation,
quota probes: no Bash tool offered) get a short text.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents import agent_bin
from tests.support.fake_upstream import FakeUpstream, Response, openai_text, openai_tool_call
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.claude]

REPO = Path(__file__).resolve().parents[2]
MARKER = "archc-tool-ran"
FINAL = "The command printed archc-tool-ran; all good."


def _claude() -> str:
    return agent_bin("claude", "@anthropic-ai/claude-code")


def _script(fmt: str, body: Any) -> Response:
    """The main conversation: a Bash call first, then text once the tool result is back."""
    messages = body.get("messages") or []
    tools = {t.get("function", {}).get("name") for t in body.get("tools") or []}
    if messages and messages[-1].get("role") == "tool":
        return openai_text(FINAL)(fmt, body)
    if "Bash" in tools:
        return openai_tool_call("Bash", {"command": f"echo {MARKER}", "description": "Print the marker"},
                                call_id="call_bash_1")(fmt, body)
    return openai_text("ok")(fmt, body)


def _main_requests(up: FakeUpstream) -> list[Any]:
    return [r for r in up.requests if any(t.get("function", {}).get("name") == "Bash" for t in r.body.get("tools") or [])]


def test_claude_code_runs_a_tool_through_the_gateway(tmp_path: Path) -> None:
    claude = _claude()
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    with FakeUpstream(default=_script) as up:
        bundle = write_bundle(tmp_path, bundle_dict(
            [provider("openai/gpt-4o", up.openai_endpoint(), auth="bearer", key_env="ARCHC_TEST_OPENAI_KEY", default=True)]))
        with Gateway(bundle, env={"ARCHC_TEST_OPENAI_KEY": "sk-upstream"}) as gw:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
            env.update(HOME=str(home), ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_AUTH_TOKEN="gateway-token", DISABLE_TELEMETRY="1",
                       CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1", CI="true")
            done = subprocess.run([claude, "-p", f"Run `echo {MARKER}` with the Bash tool and tell me what it printed.",
                                   "--allowedTools", "Bash"], cwd=work, env=env, capture_output=True, text=True, timeout=180)
            logs = gw.logs()
    assert done.returncode == 0, f"claude failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n--- gateway ---\n{logs}"
    assert FINAL in done.stdout

    main = _main_requests(up)
    assert len(main) >= 2, [r.body.get("messages", [])[-1:] for r in up.requests]
    first, second = main[0].body, main[-1].body
    # Claude Code's request arrived as OpenAI chat, with its tools and the upstream's model id.
    assert first["model"] == "gpt-4o" and main[0].headers["Authorization"] == "Bearer sk-upstream"
    assert first["stream"] is True and first["messages"][0]["role"] == "system"
    users = [m for m in first["messages"] if m["role"] == "user"]
    assert MARKER in str(users[-1]["content"])
    # Claude Code's mid-conversation system turns stay system messages in place.
    assert any(m["role"] == "system" for m in first["messages"][1:])
    # The second request carries the tool call and Bash's real output back as an OpenAI tool message.
    assistant = [m for m in second["messages"] if m.get("tool_calls")][-1]
    assert assistant["tool_calls"][0]["id"] == "call_bash_1" and assistant["tool_calls"][0]["function"]["name"] == "Bash"
    tool = second["messages"][-1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_bash_1"
    assert MARKER in str(tool["content"])
    # Nothing reached the upstream with the client's gateway token.
    assert all("gateway-token" not in str(r.headers) for r in up.requests)
