"""base_url forms from real configs, end to end: compiled by archc, served by `archc serve`, and the
path and query the fake upstream receives (README's base_url table, on loopback).

Each provider's documented base_url is rewritten onto the fake upstream's origin (same path and
query), so the test proves what reaches the wire, not only what the compiler printed.
"""

from __future__ import annotations

from typing import Iterator

import anthropic
import openai
import pytest

from archc.compiler import compile_source
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, write_bundle

pytestmark = pytest.mark.e2e

# name, model literal, provider_interface, base_url path+query, expected path, expected query
FORMS = [
    ("deepseek-anthropic", "ds/deepseek-chat", "anthropic", "/anthropic", "/anthropic/v1/messages", ""),
    ("zai-anthropic", "zai/glm-4.6", "anthropic", "/api/anthropic", "/api/anthropic/v1/messages", ""),
    ("openrouter-anthropic", "ora/claude", "anthropic", "/api", "/api/v1/messages", ""),
    ("anthropic-v1", "anv1/claude", "anthropic", "/v1", "/v1/messages", ""),
    ("cloudflare-anthropic", "cfa/claude", "anthropic", "/v1/acct/gw/anthropic", "/v1/acct/gw/anthropic/v1/messages", ""),
    ("azure-classic", "azure_openai/gpt4o-prod", None, "", "/openai/deployments/gpt4o-prod/chat/completions",
     "api-version=2024-10-21"),
    ("azure-version-in-url", "azure_openai/gpt4o-prod", None, "/?api-version=2025-01-01-preview",
     "/openai/deployments/gpt4o-prod/chat/completions", "api-version=2025-01-01-preview"),
    ("azure-pasted", "azure_openai/anything", None,
     "/openai/deployments/pasted/chat/completions?api-version=2025-04-01-preview",
     "/openai/deployments/pasted/chat/completions", "api-version=2025-04-01-preview"),
    ("azure-v1", "azure_openai/gpt-4o", None, "/openai/v1/", "/openai/v1/chat/completions", ""),
    ("groq", "groq/llama", None, "/openai/v1", "/openai/v1/chat/completions", ""),
    ("vllm-bare", "vllm/qwen", "openai", "", "/v1/chat/completions", ""),
    ("openai-pasted", "self/qwen", "openai", "/v1/chat/completions", "/v1/chat/completions", ""),
    ("openai-query", "tenant/qwen", "openai", "/v1?tenant=a", "/v1/chat/completions", "tenant=a"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeUpstream, Gateway, list]]:
    with FakeUpstream() as up:
        lines = ["version: v0.3.0", "listeners:", "  - {type: model, name: llm}", "model_providers:"]
        for i, (name, literal, interface, tail, _, _) in enumerate(FORMS):
            lines += [f"  - name: {name}", f"    model: {literal}", f"    base_url: \"{up.url}{tail}\""]
            if interface:
                lines.append(f"    provider_interface: {interface}")
            if i == 0:
                lines.append("    default: true")
        result = compile_source("\n".join(lines) + "\n", lock_mode="ignore")
        assert result.ok, [d.message for d in result.diagnostics]
        path = write_bundle(tmp_path_factory.mktemp("base_urls"), result.bundle)
        with Gateway(path) as gw:
            yield up, gw, result.diagnostics


@pytest.mark.parametrize("name,literal,interface,tail,path,query", FORMS, ids=[f[0] for f in FORMS])
def test_upstream_receives_path_and_query(served, name, literal, interface, tail, path, query) -> None:
    up, gw, _ = served
    up.reset()
    oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    answer = oai.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "ok"
    got = up.requests[-1]
    assert (got.path, got.query) == (path, query)


def test_anthropic_client_reaches_deepseek_path(served) -> None:
    up, gw, _ = served
    up.reset()
    client = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    msg = client.messages.create(model="deepseek-anthropic", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "ok"
    assert up.requests[-1].path == "/anthropic/v1/messages"


def test_pasted_endpoints_warn_r317(served) -> None:
    _, _, diagnostics = served
    warned = sorted(d.path for d in diagnostics if d.code == "R317")
    names = [f[0] for f in FORMS]
    assert warned == sorted(f"model_providers[{names.index(n)}].base_url" for n in ("azure-pasted", "openai-pasted"))
