"""archgw's remote-router config (routing.llm_provider naming the Arch-Router GGUF on an Ollama/vLLM
server) served by a real `archc serve` process: the router is a fake OpenAI-compatible server on
127.0.0.1 that answers as the model would, and the routed models a fake upstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, Response, error
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

CONFIG = """version: v0.1.0
routing:
  model: Arch-Router
  llm_provider: arch-router
  timeout_ms: 3000
listeners: [{{type: model, name: llm, port: 12000}}]
llm_providers:
  - name: arch-router
    model: arch/hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M
    base_url: {router}
  - model: openai/gpt-4o-mini
    base_url: {llm}/v1
    default: true
  - model: openai/gpt-4o
    base_url: {llm}/v1
    routing_preferences:
      - name: code understanding
        description: understand and explain existing code snippets, functions, or libraries
"""


def router_model(fmt: str, body: Any) -> Response:
    """What Arch-Router answers: the code route when the conversation's last user turn is about code."""
    prompt = body["messages"][0]["content"]
    turns = json.loads(prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0])
    route = "code understanding" if "code" in turns[-1]["content"] else "other"
    text = json.dumps({"route": route})
    return Response(json={"id": "chatcmpl-router", "object": "chat.completion", "created": 1, "model": body["model"],
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 300, "completion_tokens": 8, "total_tokens": 308}})


@pytest.fixture
def servers() -> Any:
    with FakeUpstream(default=router_model) as router, FakeUpstream() as llm:
        yield router, llm


@pytest.fixture
def gateway(servers: Any, tmp_path: Path, start_gateway: Callable[..., Gateway]) -> Gateway:
    router, llm = servers
    config = tmp_path / "arch_config.yaml"
    config.write_text(CONFIG.format(router=router.url, llm=llm.url), encoding="utf-8")
    return start_gateway(config)


def chat(gw: Gateway, text: str) -> httpx.Response:
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=20,
                   json={"model": "none", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def test_decisions_come_from_the_router_server(gateway: Gateway, servers: Any) -> None:
    router, llm = servers
    ready = httpx.get(gateway.url + "/readyz", timeout=5).json()
    assert (ready["router_backend"], ready["router_at"]) == ("remote", f"{router.url}/v1/chat/completions")
    r = chat(gateway, "explain this code: def f(x): return x * 2")
    assert (r.headers["x-arch-route"], r.headers["x-arch-target"]) == ("code understanding", "openai/gpt-4o")
    other = chat(gateway, "what's the weather like?")
    assert other.headers["x-arch-fallback"] == "other" and other.headers["x-arch-target"] == "openai/gpt-4o-mini"
    asked = router.requests[0]
    assert asked.path == "/v1/chat/completions" and asked.body["model"] == "hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M"
    assert asked.body["temperature"] == 0 and [m["role"] for m in asked.body["messages"]] == ["user"]
    assert '[{"role":"user","content":"explain this code: def f(x): return x * 2"}]' in asked.body["messages"][0]["content"]
    assert [q.body["model"] for q in llm.requests] == ["gpt-4o", "gpt-4o-mini"]
    # The same conversation again: the decision cache answers, the router server is not asked.
    again = chat(gateway, "explain this code: def f(x): return x * 2")
    assert again.headers["x-arch-router-cache"] == "hit" and len(router.requests) == 2


def test_a_failing_router_server_never_fails_a_request_and_is_skipped_while_down(gateway: Gateway, servers: Any) -> None:
    router, llm = servers
    router.script(error(500, "CUDA out of memory"), error(500, "CUDA out of memory"), error(500, "CUDA out of memory"))
    fallbacks = [chat(gateway, f"explain this code {i}").headers["x-arch-fallback"] for i in range(5)]
    assert fallbacks == ["error", "error", "error", "router_unavailable", "router_unavailable"]
    assert len(router.requests) == 3  # skipped while the circuit is open
    assert all(q.body["model"] == "gpt-4o-mini" for q in llm.requests) and len(llm.requests) == 5
    log = gateway.logs()
    assert "skipped for 1.0 s, requests fall back (router_unavailable)" in log and "Traceback" not in log


def test_archc_route_and_explain_use_the_router_server(servers: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    router, llm = servers
    config = tmp_path / "arch_config.yaml"
    config.write_text(CONFIG.format(router=router.url, llm=llm.url), encoding="utf-8")
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-m", "archc", "route", str(config), "explain this code: x = 1", "--format", "json"],
                          cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["route"] == "code understanding" and len(router.requests) == 1
    explained = subprocess.run([sys.executable, "-m", "archc", "explain", str(config), "--model", "openai/gpt-4o-mini"],
                               cwd=repo, capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert f"the router on 'arch-router' ({router.url}/v1/chat/completions) decides on every request" in explained.stdout
