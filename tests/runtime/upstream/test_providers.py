"""Provider targets: auth headers per style, anthropic-version, missing keys, echo."""

from __future__ import annotations

import httpx
import pytest

from archc.bundle import seal
from runtime.errors import ProviderUnavailable
from runtime.upstream.targets import ANTHROPIC_VERSION, build_targets
from runtime.wire import WireFormat
from tests.support.gateway import bundle_dict, provider


def _bundle():
    return seal(bundle_dict([
        provider("openai/gpt-4o", "https://api.openai.com/v1/chat/completions", auth="bearer", key_env="OPENAI_API_KEY", default=True),
        provider("anthropic/claude-x", "https://api.anthropic.com/v1/messages", wire="anthropic_messages", auth="x-api-key",
                 key_env="ANTHROPIC_API_KEY"),
        provider("azure_openai/gpt-4o", "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
                 auth="api-key", key_env="AZURE_API_KEY"),
        provider("ollama/llama3", "http://127.0.0.1:11434/v1/chat/completions"),
        provider("echo/demo", "echo://local"),
        provider("amazon_bedrock/x", "https://bedrock.example/x", served=False),
    ]))


def test_auth_header_per_style_and_anthropic_version():
    env = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "AZURE_API_KEY": "az"}
    t = build_targets(_bundle(), env)
    assert dict(t["openai/gpt-4o"].headers)["authorization"] == "Bearer sk-o"
    a = dict(t["anthropic/claude-x"].headers)
    assert a["x-api-key"] == "sk-a" and a["anthropic-version"] == ANTHROPIC_VERSION and "authorization" not in a
    assert t["anthropic/claude-x"].upstream_format is WireFormat.ANTHROPIC_MESSAGES
    z = dict(t["azure_openai/gpt-4o"].headers)
    assert z["api-key"] == "az" and "authorization" not in z
    assert "api-version=2024-10-21" in t["azure_openai/gpt-4o"].url
    assert not any(k in ("authorization", "x-api-key", "api-key") for k, _ in t["ollama/llama3"].headers)
    assert t["echo/demo"].echo


def test_missing_key_warns_naming_variable_and_503_when_used():
    t = build_targets(_bundle(), {"OPENAI_API_KEY": "sk-o"})
    assert any("ANTHROPIC_API_KEY" in w for w in t.warnings)
    assert all("sk-o" not in w for w in t.warnings)
    with pytest.raises(ProviderUnavailable) as info:
        t["anthropic/claude-x"].check_usable()
    assert info.value.status == 503 and "ANTHROPIC_API_KEY" in info.value.message
    t["openai/gpt-4o"].check_usable()


def test_unserved_provider_is_503():
    t = build_targets(_bundle(), {})
    with pytest.raises(ProviderUnavailable, match="not served"):
        t["amazon_bedrock/x"].check_usable()


def test_echo_mode_answers_unset_keys_with_echo():
    t = build_targets(_bundle(), {"OPENAI_API_KEY": "sk-o"}, echo_missing=True)
    assert set(t.echoed) == {"anthropic/claude-x", "azure_openai/gpt-4o"}
    assert t["anthropic/claude-x"].echo and not t["openai/gpt-4o"].echo
    t["anthropic/claude-x"].check_usable()


def test_key_never_in_repr_and_scrubbed():
    t = build_targets(_bundle(), {"OPENAI_API_KEY": "sk-secret-123"})["openai/gpt-4o"]
    assert "sk-secret-123" not in repr(t)
    assert t.scrub("bad key sk-secret-123 given") == "bad key [redacted] given"


PROVIDER_TABLE = [
    # prefix, model, base_url path on the fake, key variable, expected path, auth header, expected value
    ("openai", "gpt-4o", "/openai/v1", "OPENAI_API_KEY", "/openai/v1/chat/completions", "authorization", "Bearer k-openai"),
    ("gemini", "gemini-2.5-flash", "/gemini/v1beta/openai", "GEMINI_API_KEY", "/gemini/v1beta/openai/chat/completions",
     "authorization", "Bearer k-gemini"),
    ("mistral", "mistral-large-latest", "/mistral/v1", "MISTRAL_API_KEY", "/mistral/v1/chat/completions", "authorization", "Bearer k-mistral"),
    ("deepseek", "deepseek-chat", "/deepseek/v1", "DEEPSEEK_API_KEY", "/deepseek/v1/chat/completions", "authorization", "Bearer k-deepseek"),
    ("groq", "llama-3.3-70b", "/groq/openai/v1", "GROQ_API_KEY", "/groq/openai/v1/chat/completions", "authorization", "Bearer k-groq"),
    ("xai", "grok-4", "/xai/v1", "XAI_API_KEY", "/xai/v1/chat/completions", "authorization", "Bearer k-xai"),
    ("together_ai", "openai/gpt-oss-20b", "/together/v1", "TOGETHER_API_KEY", "/together/v1/chat/completions", "authorization", "Bearer k-together"),
    ("openrouter", "qwen/qwen3-coder", "/openrouter/api/v1", "OPENROUTER_API_KEY", "/openrouter/api/v1/chat/completions",
     "authorization", "Bearer k-openrouter"),
    ("azure_openai", "my-deploy", "", "AZURE_API_KEY", "/openai/deployments/my-deploy/chat/completions", "api-key", "k-azure"),
    ("anthropic", "claude-sonnet-4-5", "/anthropic/v1", "ANTHROPIC_API_KEY", "/anthropic/v1/messages", "x-api-key", "k-anthropic"),
    ("ollama", "llama3.1", "", None, "/v1/chat/completions", None, None),
]


def test_every_provider_kind_gets_its_url_and_auth_through_a_real_gateway(tmp_path, fake_upstream, start_gateway):
    """Compiled from a config (the compiler's provider table), served, and called: each provider's
    request lands on its own path with its own auth header and the upstream model id."""
    lines = ["version: v0.3.0", "listeners:", "  - type: model", "    name: llm", "    port: 12000", "model_providers:"]
    env = {}
    for prefix, model, path, key_env, _, _, _ in PROVIDER_TABLE:
        lines += [f"  - model: {prefix}/{model}", f"    base_url: {fake_upstream.url}{path}"]
        if key_env:
            lines.append(f"    access_key: ${key_env}")
            env[key_env] = "k-" + prefix.split("_")[0]
    lines[7:7] = ["    default: true"]
    config = tmp_path / "providers.yaml"
    config.write_text("\n".join(lines) + "\n")
    gw = start_gateway(config, env=env)
    with httpx.Client(base_url=gw.url, timeout=20) as client:
        for prefix, model, *_ in PROVIDER_TABLE:
            r = client.post("/v1/chat/completions", json={"model": f"{prefix}/{model}", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, (prefix, r.text)
            assert r.headers["x-arch-provider"] == prefix and r.headers["x-arch-model"] == model
    assert len(fake_upstream.requests) == len(PROVIDER_TABLE)
    for rec, (prefix, model, _, _, path, header, value) in zip(fake_upstream.requests, PROVIDER_TABLE):
        assert rec.path == path, prefix
        assert rec.body["model"] == model, prefix
        sent = {k.lower(): v for k, v in rec.headers.items()}
        if header:
            assert sent[header] == value, prefix
        others = {"authorization", "x-api-key", "api-key"} - {header}
        assert not others & set(sent), (prefix, others & set(sent))
        if prefix == "azure_openai":
            assert "api-version=" in rec.query
        if prefix == "anthropic":
            assert sent["anthropic-version"] == "2023-06-01"
