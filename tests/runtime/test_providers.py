"""Provider targets: auth headers per style, anthropic-version, missing keys, echo."""

from __future__ import annotations

import pytest

from archc.bundle import seal
from runtime.errors import ProviderUnavailable
from runtime.providers import ANTHROPIC_VERSION, build_targets
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
