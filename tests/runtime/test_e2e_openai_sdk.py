"""The unmodified `openai` SDK against a real `archc serve` process and a fake upstream on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, anthropic_text, anthropic_tool_use, error, openai_text, stalling
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}]


@pytest.fixture
def client(e2e_gateway: Gateway):
    with openai.OpenAI(base_url=e2e_gateway.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as c:
        yield c


def test_text_passthrough_non_streamed(client, upstream: FakeUpstream):
    upstream.script(openai_text("Hello from upstream"))
    raw = client.chat.completions.with_raw_response.create(model="arch.oai.v1", messages=[{"role": "user", "content": "hi"}],
                                                           extra_body={"vendor_flag": True})
    out = raw.parse()
    assert out.choices[0].message.content == "Hello from upstream"
    assert out.usage.total_tokens == 18
    assert (raw.headers["x-arch-target"], raw.headers["x-arch-why"], raw.headers["x-arch-route"]) == ("openai/gpt-4o", "alias", "none")
    sent = upstream.requests[0]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "gpt-4o" and sent.body["vendor_flag"] is True
    assert sent.headers["Authorization"] == "Bearer sk-test-openai"


def test_text_passthrough_streamed(client, upstream):
    upstream.script(openai_text("one two three four"))
    stream = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage.completion_tokens == 7
    assert upstream.requests[0].body["stream"] is True


def test_to_anthropic_upstream_text_and_system(client, upstream):
    upstream.script(anthropic_text("Bonjour", usage=(30, 4)))
    out = client.chat.completions.create(model="arch.ant.v1", max_tokens=100,
                                         messages=[{"role": "system", "content": "Answer in French."},
                                                   {"role": "user", "content": "hello"}])
    assert out.choices[0].message.content == "Bonjour" and out.choices[0].finish_reason == "stop"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (30, 4)
    sent = upstream.requests[0]
    assert sent.path == "/v1/messages" and sent.body["system"] == "Answer in French." and sent.body["model"] == "claude-x"
    assert sent.headers["x-api-key"] == "sk-test-anthropic" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers


def test_tool_call_and_tool_result_via_anthropic_upstream(client, upstream):
    upstream.script(anthropic_tool_use("get_weather", {"city": "Paris"}, tool_id="toolu_01"), anthropic_text("It is sunny."))
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="anthropic/claude-x", messages=messages, tools=TOOLS, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert upstream.requests[0].body["tool_choice"] == {"type": "any"}
    assert upstream.requests[0].body["tools"][0]["input_schema"]["required"] == ["city"]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "22 C and sunny"}]
    second = client.chat.completions.create(model="anthropic/claude-x", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "It is sunny."
    turns = upstream.requests[1].body["messages"]
    assert turns[1]["content"][0]["type"] == "tool_use" and turns[1]["content"][0]["id"] == call.id
    result = turns[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call.id
    assert "22 C and sunny" in json.dumps(result["content"])


def test_streamed_tool_arguments_from_anthropic_upstream(client, upstream):
    args = {"city": "São Paulo", "units": "metric", "days": [1, 2, 3]}
    upstream.script(anthropic_tool_use("get_weather", args, text="Checking."))
    stream = client.chat.completions.create(model="anthropic/claude-x", messages=[{"role": "user", "content": "w?"}],
                                            tools=TOOLS, stream=True)
    pieces, text, name, finish = [], "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            name = tc.function.name or name
            pieces.append(tc.function.arguments or "")
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Checking." and name == "get_weather" and finish == "tool_calls"
    assert len([p for p in pieces if p]) >= 2  # arrived in several deltas
    assert json.loads("".join(pieces)) == args


def test_thinking_from_anthropic_upstream_becomes_reasoning_content(client, upstream):
    upstream.script(anthropic_text("42", thinking="Let me add.", signature="sig-abc"))
    out = client.chat.completions.create(model="anthropic/claude-x", messages=[{"role": "user", "content": "6*7"}])
    message = out.choices[0].message
    assert message.content == "42"
    assert message.model_extra["reasoning_content"] == "Let me add."


def test_upstream_error_status_reaches_the_sdk(client, upstream):
    upstream.script(error(429, "slow down please", kind="rate_limit_error"))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "slow down please" in str(info.value)


def test_unknown_model_falls_back_to_default_and_bad_request_is_400(client, upstream):
    raw = client.chat.completions.with_raw_response.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-arch-why"] == "default" and raw.headers["x-arch-target"] == "openai/gpt-4o"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": 5}])
    assert "messages[0].content" in str(info.value)


def test_models_list(client, upstream):
    ids = [m.id for m in client.models.list()]
    assert ids == ["arch.oai.v1", "arch.ant.v1", "openai/gpt-4o", "anthropic/claude-x"]


def test_client_disconnect_cancels_the_upstream_request(e2e_gateway, upstream):
    upstream.script(stalling(openai_text("a b c d e f g h")))
    body = {"model": "openai/gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", e2e_gateway.url + "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            next(r.iter_raw())
    assert upstream.wait_disconnect(10), "the upstream never saw the client leave"
    # The gateway is still healthy afterwards.
    assert httpx.get(e2e_gateway.url + "/healthz").status_code == 200


CONFIG = """\
version: v0.3.0
listeners:
  - type: model
    name: llm
    port: 12000
model_providers:
  - model: openai/gpt-4o
    base_url: {url}
    default: true
  - model: openai/gpt-4o-mini
    base_url: {url}
    routing_preferences:
      - name: code generation
        description: generating new code snippets or functions
model_aliases:
  arch.general.v1:
    target: openai/gpt-4o
routing:
  model: Arch-Router
"""


def test_config_served_with_the_real_router_on_a_tiny_scripted_model(tmp_path, fake_upstream, start_gateway,
                                                                       scripted_router_model):
    """`archc serve CONFIG --model-dir` compiles in memory and routes with the CTranslate2 router."""
    config = tmp_path / "routes.yaml"
    config.write_text(CONFIG.format(url=fake_upstream.url))
    model_dir = scripted_router_model('{"route": "code generation"}')
    gw = start_gateway(config, args=["--model-dir", str(model_dir)])
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="arch.general.v1", messages=[{"role": "user", "content": "write a sort function"}])
        decision = c.post("/route", cast_to=httpx.Response, body={"model": "arch.general.v1",
                                                                  "messages": [{"role": "user", "content": "hello"}]})
    h = raw.headers
    assert (h["x-arch-route"], h["x-arch-why"], h["x-arch-target"]) == ("code generation", "route", "openai/gpt-4o-mini")
    assert float(h["x-arch-router-ms"]) > 0 and "x-arch-fallback" not in h
    assert fake_upstream.requests[0].body["model"] == "gpt-4o-mini"
    d = decision.json()
    assert d["route"] == "code generation" and d["router_ran"] is True and len(fake_upstream.requests) == 1


def test_demo_runs_with_echo_and_uses_an_installed_router_model(repo_root, scripted_router_model):
    """`make demo`'s script: no keys (echo), and with ARCHC_MODEL_DIR set it routes with that model."""
    env = {**os.environ, "ARCHC_MODEL_DIR": str(scripted_router_model('{"route": "code generation"}'))}
    done = subprocess.run([sys.executable, str(repo_root / "examples" / "demo.py")], env=env, capture_output=True,
                          text=True, timeout=120, cwd=repo_root)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("openai ", "anthropic "))]
    assert len(rows) == 5 and all(" code generation " in r and "openai/gpt-5-2025-08-07" in r for r in rows), done.stdout
    assert "built-in echo upstream" in done.stdout and "router model:" in done.stdout


def test_serve_with_two_workers(tmp_path, fake_upstream, start_gateway):
    """`--workers 2`: hypercorn worker processes each load the compiled bundle and answer."""
    config = tmp_path / "routes.yaml"
    config.write_text(CONFIG.format(url=fake_upstream.url))
    gw = start_gateway(config, args=["--workers", "2"], startup_timeout=60)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as c:
        outs = [c.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": f"n{i}"}]) for i in range(4)]
    assert all(o.choices[0].message.content == "ok" for o in outs) and len(fake_upstream.requests) == 4


def test_serve_broken_config_prints_diagnostics_and_exits_1(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("version: v0.3.0\nlisteners:\n  - type: model\n    name: llm\n    port: 12000\n"
                      "model_providers:\n  - model: openai/gpt-4o\n    acess_key: $OPENAI_API_KEY\n")
    done = subprocess.run([sys.executable, "-m", "archc", "serve", str(config), "--port", "1"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "bad.yaml:8:5" in done.stderr and "access_key" in done.stderr and "Traceback" not in done.stderr


PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_image_part_reaches_anthropic_upstream_as_base64_block(client, upstream):
    upstream.script(anthropic_text("A single pixel."))
    out = client.chat.completions.create(model="anthropic/claude-x", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}])
    assert out.choices[0].message.content == "A single pixel."
    blocks = upstream.requests[0].body["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "What is this?"}
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
