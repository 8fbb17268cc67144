"""archgw's remote-router config (routing.llm_provider naming the Arch-Router GGUF on an Ollama/vLLM
server) served by a real `archc serve` process: the router is a fake OpenAI-compatible server on
127.0.0.1 that answers as the model would, and the routed models a fake upstream."""

from __future__ import annotations

import json
import math
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


# A ChatML template as Qwen2.5's is shaped (a default system turn when none is given), in a
# tokenizer_config.json as a checkpoint ships it.
CHATML = ("{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
          "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def text_completion_router(fmt: str, body: Any) -> Response:
    """Arch-Router behind /v1/completions: the raw prompt in, the answer as text with completions-API logprobs."""
    prompt = body["prompt"]
    turns = json.loads(prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0])
    route = "code understanding" if "code" in turns[-1]["content"] else "other"
    head = route.split(" ")[0]
    tokens = ['{"', "route", '":', ' "', head, route[len(head):] + '"}']
    logprobs = {"tokens": tokens, "token_logprobs": [0.0, 0.0, 0.0, 0.0, math.log(0.8), 0.0],
                "top_logprobs": [{t: 0.0} for t in tokens[:4]] + [{head: math.log(0.8), "other": math.log(0.2)}, {tokens[5]: 0.0}],
                "text_offset": [0, 2, 7, 9, 11, 11 + len(head)]}
    return Response(json={"id": "cmpl-router", "object": "text_completion", "created": 1, "model": body["model"],
                          "choices": [{"index": 0, "text": "".join(tokens), "logprobs": logprobs, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 310, "completion_tokens": 6, "total_tokens": 316}})


def test_the_completions_form_sends_the_prompt_rendered_through_the_checkpoints_template(tmp_path: Path,
                                                                                         start_gateway: Callable[..., Gateway]) -> None:
    (tmp_path / "router").mkdir()
    (tmp_path / "router" / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": CHATML, "eos_token": "<|im_end|>", "bos_token": None, "pad_token": {"content": "<|endoftext|>"}}))
    with FakeUpstream(default=text_completion_router) as router, FakeUpstream() as llm:
        config = tmp_path / "arch_config.yaml"
        config.write_text(CONFIG.format(router=router.url, llm=llm.url).replace(
            "  timeout_ms: 3000\n", "  timeout_ms: 3000\n  remote_api: completions\n  chat_template: router/tokenizer_config.json\n"))
        gw = start_gateway(config)
        ready = httpx.get(gw.url + "/readyz", timeout=5).json()
        assert (ready["router_backend"], ready["router_at"]) == ("remote", f"{router.url}/v1/completions")
        r = chat(gw, "explain this code: def f(x): return x * 2")
        assert (r.headers["x-arch-route"], r.headers["x-arch-target"]) == ("code understanding", "openai/gpt-4o")
        asked = router.requests[0]
        assert asked.path == "/v1/completions" and "messages" not in asked.body
        assert asked.body["temperature"] == 0 and asked.body["logprobs"] == 20 and asked.body["stream"] is False
        prompt = asked.body["prompt"]
        assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
        assert prompt.endswith("</conversation>\n" + prompt.split("</conversation>\n", 1)[1]) and prompt.endswith(
            "<|im_end|>\n<|im_start|>assistant\n")
        assert '[{"role":"user","content":"explain this code: def f(x): return x * 2"}]' in prompt
        # The confidence comes from the completions API's logprobs, as from the chat API's.
        decided = httpx.post(gw.url + "/v1/route", timeout=10,
                             json={"messages": [{"role": "user", "content": "explain some more code"}]}).json()
        assert decided["route"] == "code understanding" and decided["confidence"] == pytest.approx(0.8)
        other = chat(gw, "what's the weather like?")
        assert other.headers["x-arch-fallback"] == "other" and other.headers["x-arch-target"] == "openai/gpt-4o-mini"
    import subprocess
    import sys

    explained = subprocess.run([sys.executable, "-m", "archc", "explain", str(config), "--model", "openai/gpt-4o-mini"],
                               cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert (f"the router on 'arch-router' ({router.url}/v1/completions, its completions API with the prompt rendered "
            "through routing.chat_template) decides") in explained.stdout.replace("\n", " ")


@pytest.mark.parametrize("routing,code,message", [
    ("  remote_api: completions\n", "R321", "routing.remote_api: completions needs routing.chat_template"),
    ("  remote_api: completions\n  chat_template: missing.json\n", "R322", "cannot be read"),
    ("  remote_api: completions\n  chat_template: bad.json\n", "R322", "has no chat_template"),
    ("  remote_api: completions\n  chat_template: broken.jinja\n", "R322", "the chat template does not compile (line 1"),
])
def test_the_completions_form_without_a_usable_template_does_not_compile(tmp_path: Path, routing: str, code: str,
                                                                          message: str) -> None:
    from archc.compiler import compile_path

    (tmp_path / "bad.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    (tmp_path / "broken.jinja").write_text("{% for m in messages %}{{ m.content }")
    config = tmp_path / "arch_config.yaml"
    config.write_text(CONFIG.format(router="http://127.0.0.1:9", llm="http://127.0.0.1:9").replace(
        "  timeout_ms: 3000\n", "  timeout_ms: 3000\n" + routing))
    result = compile_path(config, lock_mode="ignore")
    assert result.bundle is None
    found = [d for d in result.diagnostics if d.code == code]
    assert found and message in found[0].message, [str(d) for d in result.diagnostics]
