"""Claude Code, routed: the real CLI through `archc serve` with a real (tiny) CTranslate2 router.

An agent turn runs the router once and every continuation is a decision-cache hit, with the
route's model at the upstream each time; two intents in two turns go to two models; the status
line command shows the session's decision. The fake upstream speaks OpenAI chat.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from archc.bundle import seal
from runtime.router.service import build_router
from tests.support import tiny_models
from tests.support.claude_fixtures import GENERATE_INTENT, REVIEW_INTENT, run_claude
from tests.support.fake_upstream import FakeUpstream, Recorded, openai_text, openai_tool_call
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(240)]

CONFIG = """\
version: v0.1.0
listeners:
  egress_traffic:
    address: 127.0.0.1
    port: {port}
    message_format: openai
    timeout: 30s
llm_providers:
  - model: openai/gpt-default
    base_url: {upstream}
    default: true
  - model: openai/gpt-gen
    base_url: {upstream}
    routing_preferences:
      - name: code_generation
        description: generating new code snippets, functions, or boilerplate based on user prompts
  - model: openai/gpt-review
    base_url: {upstream}
    routing_preferences:
      - name: code_review
        description: reviewing, analyzing, and suggesting improvements to existing code
  - model: openai/gpt-small
    base_url: {upstream}
model_aliases:
  arch.claude.code.small.fast:
    target: openai/gpt-small
routing:
  # Claude Code names the small/fast alias for side requests (titles, summaries): they skip the
  # router and go to the small model. Its main model is not in the config, so main turns are routed.
  explicit_model_bypass: true
"""


def write_config(folder: Path, upstream: str, port: int = 12000) -> Path:
    path = folder / "claude_routes.yaml"
    path.write_text(CONFIG.format(upstream=upstream, port=port), encoding="utf-8")
    return path


def main_requests(up: FakeUpstream) -> list[Recorded]:
    """The main conversation's requests: Claude Code's agent loop always sends its tools."""
    return [r for r in up.requests if r.method == "POST" and isinstance(r.body, dict) and r.body.get("tools")]


def session(gw: Gateway, session_id: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/v1/arch/sessions/{session_id}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"claude failed ({proc.returncode}):\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


@pytest.fixture
def routed_gateway(tmp_path: Path, fake_upstream: FakeUpstream, branching_router_model: Path,
                   start_gateway: Callable[..., Gateway]) -> Gateway:
    config = write_config(tmp_path, fake_upstream.url)
    return start_gateway(config, args=["--model-dir", str(branching_router_model)])


@pytest.mark.e2e
@pytest.mark.claude
def test_agent_turn_runs_the_router_once(routed_gateway: Gateway, fake_upstream: FakeUpstream, claude_bin: str,
                                         claude_home: Path) -> None:
    fake_upstream.script(
        openai_tool_call("Bash", {"command": "echo step-one", "description": "first"}, call_id="call_1"),
        openai_tool_call("Bash", {"command": "echo step-two", "description": "second"}, call_id="call_2"),
        openai_tool_call("Bash", {"command": "echo step-three", "description": "third"}, call_id="call_3"),
        openai_text("three steps ran"),
    )
    proc = run_claude(claude_bin, claude_home, routed_gateway.url, "-p", f"{GENERATE_INTENT}, then run it three times",
                      "--allowedTools", "Bash", "--output-format", "json")
    result = result_of(proc)
    assert "three steps ran" in result["result"]

    turn = main_requests(fake_upstream)
    assert len(turn) == 4, [r.body.get("model") for r in fake_upstream.requests if isinstance(r.body, dict)]
    assert [r.body["model"] for r in turn] == ["gpt-gen"] * 4
    # Each continuation carried the previous tool's output back (as OpenAI tool messages).
    for n, word in ((1, "step-one"), (2, "step-two"), (3, "step-three")):
        tools = [m for m in turn[n].body["messages"] if m.get("role") == "tool"]
        assert len(tools) == n and word in json.dumps(tools[-1])

    status = session(routed_gateway, result["session_id"])
    assert (status["route"], status["provider"], status["model"]) == ("code_generation", "openai", "gpt-gen")
    assert status["cache_hit"] is True  # the turn's last request was a continuation
    side = len(fake_upstream.requests) - len(turn)  # side requests (none are expected in -p mode)
    assert status["requests"] == len(turn) + side
    assert status["router_runs"] == 1 + side and status["cache_hits"] == 3

    metrics = httpx.get(routed_gateway.url + "/metrics", timeout=5).text
    assert _decisions(metrics, "code_generation", "hit") == 3.0
    assert _decisions(metrics, "code_generation", "miss") == 1.0


@pytest.mark.e2e
@pytest.mark.claude
def test_two_intents_in_two_turns_go_to_two_models(routed_gateway: Gateway, fake_upstream: FakeUpstream,
                                                   claude_bin: str, claude_home: Path) -> None:
    fake_upstream.script(openai_text("here is a sort function"), openai_text("no bugs found"))
    first = result_of(run_claude(claude_bin, claude_home, routed_gateway.url, "-p", GENERATE_INTENT,
                                 "--output-format", "json"))
    assert "sort function" in first["result"]
    second = result_of(run_claude(claude_bin, claude_home, routed_gateway.url, "-p", REVIEW_INTENT,
                                  "--resume", first["session_id"], "--output-format", "json"))
    assert "no bugs found" in second["result"]

    turns = main_requests(fake_upstream)
    assert [r.body["model"] for r in turns] == ["gpt-gen", "gpt-review"]
    # The second turn carried the first one: same conversation, a new user intent.
    assert GENERATE_INTENT in json.dumps(turns[1].body["messages"]) and REVIEW_INTENT in json.dumps(turns[1].body["messages"])

    status = session(routed_gateway, second["session_id"])
    assert (status["route"], status["model"], status["cache_hit"]) == ("code_review", "gpt-review", False)

    # What Claude Code's status line shows: `archc statusline` reads its JSON on stdin.
    line = subprocess.run([sys.executable, "-m", "archc.statusline", "--url", routed_gateway.url],
                          input=json.dumps({"session_id": second["session_id"], "model": {"display_name": "Opus"}}),
                          capture_output=True, text=True, timeout=30)
    assert line.returncode == 0, line.stderr
    assert line.stdout.startswith("code_review → openai/gpt-review (") and line.stdout.rstrip().endswith("ms, cache miss)")


def _decisions(metrics: str, route: str, cache: str) -> float:
    """Sum of the router-decision counter samples for ``route`` with cache label ``cache``."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("#") or "decision" not in line.split("{")[0] or not line.split("{")[0].endswith("_total"):
            continue
        if f'route="{route}"' in line and f'cache="{cache}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_branching_router_model_answers_by_intent(branching_router_model: Path) -> None:
    """The fixture model itself, through the real router service: the intent decides the route."""
    bundle = seal(tiny_models.bundle_dict(model_dir_hint="branching"))
    reminder = {"type": "text", "text": "<system-reminder>Use the tools when useful.</system-reminder>"}

    async def decide_all() -> list[tuple[str | None, str | None]]:
        router = build_router(bundle, model_dir=branching_router_model, cache_size=0)
        try:
            out = []
            for text in (GENERATE_INTENT, REVIEW_INTENT, "hi", "long " * 3000 + "but are there bugs?"):
                d = await router.decide([{"role": "user", "content": [reminder, {"type": "text", "text": text}]}])
                out.append((d.route, d.fallback))
            return out
        finally:
            await router.aclose()

    assert asyncio.run(decide_all()) == [("code_generation", None), ("code_review", None), ("code_generation", None),
                                         ("code_review", None)]
